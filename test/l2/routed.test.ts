import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { createContext, removeContext } from "../../src/engine/contexts.ts";
import { createNetwork } from "../../src/engine/networks.ts";
import { Host } from "../../src/host.ts";
import { netctxJson, netctxOk } from "../helpers/cli.ts";
import { addressesOf, links, ping, routes } from "../helpers/kernel.ts";

interface Inspect {
  addresses: string[];
  netns: string;
}

test("two l2 contexts on a routed network reach each other through the host, with no L2 adjacency", () => {
  netctxOk(
    "network",
    "create",
    "back",
    "--driver",
    "routed",
    "--subnet",
    "10.62.0.0/24",
    "--subnet",
    "fd62::/64",
  );
  netctxOk("create", "a", "--level", "l2", "--network", "back");
  netctxOk("create", "b", "--level", "l2", "--network", "back");
  const a = netctxJson<Inspect>("inspect", "a");
  const b = netctxJson<Inspect>("inspect", "b");
  // Host routes (/32 and /128), not a shared prefix: every packet crosses the host.
  assert.deepEqual(a.addresses.map((x) => x.split("/")[1]).sort(), ["128", "32"]);
  assert.deepEqual(addressesOf(a.netns, "eth0").sort(), [...a.addresses].sort());
  assert.equal(
    links().filter((l) => l.linkinfo?.info_kind === "bridge").length,
    0,
    "no bridge on a routed network",
  );
  const hostRoutes = routes(4).map((r) => `${r.dst} ${r.dev}`);
  assert.ok(
    hostRoutes.includes(`${a.addresses.find((x) => x.endsWith("/32"))!.split("/")[0]} nc-a`),
    hostRoutes.join("; "),
  );
  assert.equal(routes(4, a.netns).find((r) => r.dst === "default")?.gateway, "10.62.0.1");

  for (const family of [4, 6] as const) {
    const target = b.addresses.find((x) => x.includes(":") === (family === 6))!.split("/")[0]!;
    assert.ok(ping(a.netns, target), `a -> b ${target}`);
  }
  // a only ever resolved its gateway: b's address is not a neighbour of a.
  const neigh = execFileSync("nsenter", [`--net=${a.netns}`, "ip", "-j", "neigh", "show"], {
    encoding: "utf8",
  });
  const neighbours = (JSON.parse(neigh) as { dst: string }[]).map((n) => n.dst);
  assert.ok(
    !neighbours.some((n) => b.addresses.some((x) => x.startsWith(`${n}/`))),
    `neighbours ${neighbours}`,
  );
});

test("a routed context removed and made again at once, under the engine's queued removals, keeps its elements", () => {
  const host = Host.open(process.env.NETCTX_STATE_DIR);
  const ifaces = () =>
    execFileSync("nft", ["-j", "list", "set", "inet", "netctx", "ifaces"], { encoding: "utf8" });
  try {
    createNetwork(host, { name: "rq", driver: "routed", subnets: ["10.64.0.0/24"] });
    createContext(host, { name: "q1", level: "l2", networks: ["rq"] });
    createContext(host, { name: "q2", level: "l2", networks: ["rq"] });
    assert.match(ifaces(), /"nc-q1"/);
    removeContext(host, "q1");
    assert.ok(host.hasDeferred, "the element removal waits for a batch");
    createContext(host, { name: "q1", level: "l2", networks: ["rq"] });
    host.flushDeferred();
    // Still registered (the queued removal did not take the new veth's elements) and reachable.
    assert.match(ifaces(), /"nc-q1"/);
    const q2 = netctxJson<Inspect>("inspect", "q2");
    assert.ok(ping("/run/netns/netctx-q1", q2.addresses[0]!.split("/")[0]!), "q1 -> q2");
    removeContext(host, "q1");
    removeContext(host, "q2");
  } finally {
    host.close();
  }
  // close() ran the queued removals: no element of either veth is left.
  assert.doesNotMatch(ifaces(), /nc-q[12]/);
});
