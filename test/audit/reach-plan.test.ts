/**
 * The reach matrix's plan (src/audit/reach-plan.ts), without the kernel: which ports are probed, and which cells the
 * policies alone do not decide (an internal network, masquerade), so the audit does not report rules it does not model.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { planReach, reachPorts } from "../../src/audit/reach-plan.ts";
import { compilePolicies } from "../../src/engine/policy-compile.ts";
import { policyRecordOf } from "../../src/model/policy.ts";
import type { NetworkRecord } from "../../src/model/records.ts";

const policy = (name: string, to: string, from: string, ports: string[] = []) =>
  policyRecordOf({ name, to, from, ports }, "");

function net(name: string, cidr: string, gateway: string, flags: Partial<NetworkRecord> = {}): NetworkRecord {
  return {
    name,
    driver: "bridge",
    subnets: [{ cidr, gateway }],
    nat: false,
    internal: false,
    mtu: 1500,
    options: {},
    ...flags,
  };
}

test("ports: each range's first and last, and per protocol one port no policy names", () => {
  const ports = reachPorts([
    policy("a", "x", "y", ["7777-7779", "53/udp"]),
    policy("b", "x", "y", ["7777/udp"]),
  ]);
  assert.deepEqual(
    ports.map((p) => `${p.proto}/${p.port}`),
    ["tcp/7777", "tcp/7779", "tcp/7780", "udp/53", "udp/7777", "udp/7778"],
  );
});

test("cells an internal network or masquerade decide read n/a; the rest follow the rule", () => {
  const plain = net("plain", "10.1.0.0/24", "10.1.0.1");
  const masq = net("masq", "10.2.0.0/24", "10.2.0.1", { nat: true });
  const closed = net("closed", "10.3.0.0/24", "10.3.0.1", { internal: true });
  const contexts = [
    { name: "p", address: "10.1.0.2", network: plain, gateway: "10.1.0.1", l2: true },
    { name: "m", address: "10.2.0.2", network: masq, gateway: "10.2.0.1", l2: true },
    { name: "c", address: "10.3.0.2", network: closed, gateway: "10.3.0.1", l2: true },
  ];
  const policies = [policy("to-p", "p", "host", ["80"])];
  const tables = compilePolicies({
    policies,
    contexts: contexts.map((c) => ({
      name: c.name,
      labels: {},
      attachments: [{ network: c.network.name, addresses: [c.address] }],
    })),
    networks: [plain, masq, closed],
  });
  const cells = planReach({ contexts, tables, ports: reachPorts(policies), world: "192.0.2.123" });
  const at = (from: string, to: string, port = "tcp/80") =>
    cells.find((c) => c.from === from && c.to === to && `${c.proto}/${c.port}` === port)?.expected;
  assert.equal(at("m", "p"), "n/a"); // masqueraded towards another network's l2 context
  assert.equal(at("c", "p"), "n/a"); // internal
  assert.equal(at("p", "c"), "n/a");
  assert.equal(at("c", "world"), "n/a");
  assert.equal(at("m", "world"), "allowed"); // masquerade does not change who the world is
  assert.equal(at("host", "p"), "allowed"); // the policy's port
  assert.equal(at("host", "p", "tcp/7777"), "blocked");
  assert.equal(at("p", "m"), "allowed"); // neither end selected
  assert.equal(at("m", "host"), "allowed");
  assert.equal(at("c", "host"), "allowed"); // an internal network still reaches its gateway
  // Every ordered pair, host both ways and the world, on each port.
  assert.equal(cells.length, (3 * 2 + 3 * 3) * 3);
});
