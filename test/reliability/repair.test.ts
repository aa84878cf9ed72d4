/**
 * `netctx repair` after `nft flush ruleset`: NAT, published ports and anti-spoofing work again, and nobody else's table is touched.
 * A foreign table whose forward chain drops by default: nftables runs every base chain at a hook and a drop in any
 * of them is final, so our accept cannot override it; netctx never edits that table or the global policy. What
 * stays true (and is tested): the host itself (the gateway) is still reachable, repair leaves the foreign table
 * byte for byte, and forwarding comes back the moment its owner allows it.
 * `netctx state export` writes inputs the engine accepts again.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { test } from "node:test";
import { ContextInputSchema, NetworkInputSchema, parseInput } from "../../src/model/schemas.ts";
import { netctxJson, netctxOk } from "../utils/cli.ts";
import { nftSet } from "../utils/kernel-oracle.ts";
import { addVethNetns, inNetns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";
import { sh } from "../utils/shell.ts";

const nft = (args: string) => sh(`nft ${args}`);

/** The first non-empty answer of a few tries (the server loop restarts nc between connections). */
function retry(get: () => string): string {
  for (let i = 0; i < 10; i++) {
    const out = get();
    if (out) return out;
    spawnSync("sleep", ["0.2"]);
  }
  return "";
}

const pingOk = (netns: string, ip: string) => ping(netns, ip, { tries: 2 });

/** A stand-in for "outside": a netns behind a veth, with no route back to the contexts' subnet. */
function makeOutside(): void {
  addVethNetns({
    name: "ext",
    hostIfname: "ext0",
    hostAddresses: ["192.0.2.1/24"],
    addresses: ["192.0.2.2/24"],
  });
}

/** A TCP server in `netns` that answers every connection with `text` (busybox nc in a loop); returns its pid. */
function serveText(netns: string, port: number, text: string): ChildProcess {
  const [nsenter, ...args] = inNetns(netns, [
    "sh",
    "-c",
    `while true; do echo ${text} | busybox nc -l -p ${port}; done`,
  ]);
  return spawn(nsenter!, args, { stdio: "ignore", detached: true });
}

/** What a TCP connection from the host to ip:port reads ("" when refused or silent). */
function fetchText(ip: string, port: number): string {
  const r = spawnSync("busybox", ["nc", "-w", "2", ip, String(port)], { encoding: "utf8", input: "" });
  return r.stdout.trim();
}

test("flush ruleset, repair: NAT, published ports and anti-spoofing work again; foreign tables are left alone", (t) => {
  makeOutside();
  netctxOk("network", "create", "rp", "--driver", "bridge", "--subnet", "10.97.0.0/24", "--nat");
  netctxOk("create", "ra", "--level", "l2", "--network", "rp", "--publish", "8080:80");
  const ra = "/run/netns/netctx-ra";
  const server = serveText(ra, 80, "published");
  // The whole group: the shell loop and its nc.
  t.after(() => process.kill(-server.pid!, "SIGKILL"));
  // Only a masqueraded packet comes back: ext has no route to 10.97.0.0/24.
  assert.ok(pingOk(ra, "192.0.2.2"), "NAT works before the flush");
  assert.equal(
    retry(() => fetchText("192.0.2.1", 8080)),
    "published",
    "the published port answers on a host address",
  );
  const before = { nets: nftSet("nets4"), ifaces: nftSet("ifaces"), rules: nft("list ruleset") };

  nft("flush ruleset");
  assert.ok(!pingOk(ra, "192.0.2.2"), "without our table there is no NAT");
  assert.equal(fetchText("192.0.2.1", 8080), "", "without our table the port is not published");
  const diff = netctxJson<{ rebuild: boolean; add: string[] }>("repair");
  assert.ok(diff.rebuild);
  assert.ok(pingOk(ra, "192.0.2.2"), "NAT works again after repair");
  assert.equal(
    retry(() => fetchText("192.0.2.1", 8080)),
    "published",
    "the published port answers again",
  );
  assert.deepEqual(nftSet("nets4"), before.nets);
  assert.deepEqual(nftSet("ifaces"), before.ifaces);
  assert.equal(nft("list ruleset"), before.rules, "the same tables, chains, rules and elements as before");

  // Anti-spoofing is back too: a forged source address does not get out.
  spawnSync("nsenter", [`--net=${ra}`, "ip", "addr", "add", "10.97.0.200/24", "dev", "eth0"]);
  const forged = spawnSync("nsenter", [
    `--net=${ra}`,
    "ping",
    "-c1",
    "-W1",
    "-I",
    "10.97.0.200",
    "192.0.2.2",
  ]);
  assert.notEqual(forged.status, 0, "a spoofed source is dropped after repair");
  spawnSync("nsenter", [`--net=${ra}`, "ip", "addr", "del", "10.97.0.200/24", "dev", "eth0"]);

  // A second repair has nothing to do.
  const again = netctxJson<{ rebuild: boolean; add: string[]; remove: string[] }>("repair");
  assert.deepEqual(again, { rebuild: false, add: [], remove: [] });
});

test("a foreign table that drops forwarded traffic wins; repair leaves it alone, the gateway stays reachable", () => {
  const ra = "/run/netns/netctx-ra";
  nft("add table inet foreign");
  nft("add chain inet foreign fdrop '{ type filter hook forward priority 10; policy drop; }'");
  nft("add rule inet foreign fdrop counter");
  const foreign = () => nft("-j list table inet foreign").replace(/"packets": \d+, "bytes": \d+/g, "");
  const foreignBefore = foreign();

  assert.ok(!pingOk(ra, "192.0.2.2"), "forwarding is dropped by the foreign policy: we cannot override it");
  assert.ok(pingOk(ra, "10.97.0.1"), "the host (gateway) is still reachable: input is not forward");
  netctxJson("repair");
  assert.equal(foreign(), foreignBefore, "repair never touches another table");
  nft("flush ruleset");
  nft("add table inet foreign");
  nft("add chain inet foreign fdrop '{ type filter hook forward priority 10; policy drop; }'");
  nft("add rule inet foreign fdrop counter");
  const foreignAfterFlush = foreign();
  assert.equal(netctxJson<{ rebuild: boolean }>("repair").rebuild, true);
  assert.equal(
    foreign(),
    foreignAfterFlush,
    "repair after a flush rebuilds ours and leaves the foreign table alone",
  );
  const ours = nft("-j list table inet netctx");
  assert.ok(!ours.includes('"policy": "drop"'), "our chains never set a drop policy");

  nft("delete table inet foreign");
  assert.ok(pingOk(ra, "192.0.2.2"), "forwarding works as soon as the foreign drop goes");
});

test("state export writes inputs the schemas accept, with every context's addresses", () => {
  netctxOk("network", "create", "rr", "--driver", "routed", "--subnet", "10.98.0.0/24", "--internal");
  netctxOk("create", "rb", "--level", "l2", "--network", "rp", "--network", "rr", "--ip", "10.98.0.7");
  const dump = JSON.parse(netctxOk("state", "export")) as {
    version: number;
    networks: unknown[];
    contexts: unknown[];
  };
  assert.equal(dump.version, 1);
  const nets = dump.networks.map((n) => parseInput(NetworkInputSchema, n));
  const ctxs = dump.contexts.map((c) => parseInput(ContextInputSchema, c));
  assert.deepEqual(nets.map((n) => n.name).sort(), ["rp", "rr"]);
  assert.equal(nets.find((n) => n.name === "rr")?.internal, true);
  assert.deepEqual(nets.find((n) => n.name === "rp")?.subnets, ["10.97.0.0/24"]);
  const rb = ctxs.find((c) => c.name === "rb")!;
  assert.deepEqual(rb.networks, ["rp", "rr"]);
  assert.ok(rb.ips?.includes("10.98.0.7"));
  assert.deepEqual(rb.ifnames, ["eth0", "eth1"]);
});
