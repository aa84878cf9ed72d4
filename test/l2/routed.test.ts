import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { createContext, removeContext } from "../../src/engine/contexts.ts";
import { createNetwork } from "../../src/engine/networks.ts";
import { Host } from "../../src/host.ts";
import { netctxJson, netctxOk } from "../utils/cli.ts";
import { testConfig } from "../utils/config.ts";
import { addressesOf, ipj, links, routes } from "../utils/kernel-oracle.ts";
import { ping } from "../utils/ping.ts";

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
  // The gateway addresses live once, on a device no context hangs off; the host-side veths hold none.
  const hostLinks = links();
  assert.equal(hostLinks.find((l) => l.ifname === "nc-back")?.linkinfo?.info_kind, "bridge");
  assert.deepEqual(
    hostLinks.filter((l) => l.master === "nc-back").map((l) => l.ifname),
    [],
    "the gateway device has no ports",
  );
  assert.deepEqual(addressesOf(undefined, "nc-back").sort(), ["10.62.0.1/32", "fd62::1/128"]);
  assert.deepEqual(addressesOf(undefined, "nc-a"), []);
  assert.deepEqual(addressesOf(undefined, "nc-b"), []);
  // A host route per address, sourced from the gateway.
  for (const family of [4, 6] as const) {
    const own = a.addresses.find((x) => x.includes(":") === (family === 6))!.split("/")[0]!;
    const route = routes(family).find((r) => r.dst === own && r.dev === "nc-a");
    assert.equal(route?.prefsrc, family === 4 ? "10.62.0.1" : "fd62::1", JSON.stringify(routes(family)));
  }
  assert.equal(routes(4, a.netns).find((r) => r.dst === "default")?.gateway, "10.62.0.1");
  // The context knows its gateway's MAC for good: nothing on the host would answer ND for it on nc-a.
  const hostMac = hostLinks.find((l) => l.ifname === "nc-a")?.address;
  const gatewayEntries = ipj<{ dst: string; lladdr?: string }>(
    ["neigh", "show", "nud", "permanent"],
    a.netns,
  ).map((n) => `${n.dst} ${n.lladdr}`);
  assert.deepEqual(gatewayEntries.sort(), [`10.62.0.1 ${hostMac}`, `fd62::1 ${hostMac}`]);
  for (const gateway of ["10.62.0.1", "fd62::1"])
    assert.ok(ping(a.netns, gateway), `a -> gateway ${gateway}`);

  for (const family of [4, 6] as const) {
    const target = b.addresses.find((x) => x.includes(":") === (family === 6))!.split("/")[0]!;
    assert.ok(ping(a.netns, target), `a -> b ${target}`);
  }
  // a only ever resolved its gateway: b's address is not a neighbour of a.
  const neighbours = ipj<{ dst: string }>(["neigh", "show"], a.netns).map((n) => n.dst);
  assert.ok(
    !neighbours.some((n) => b.addresses.some((x) => x.startsWith(`${n}/`))),
    `neighbours ${neighbours}`,
  );
});

test("an internal routed context is reached from the host by its gateway address, also after gc remade the gateway device", () => {
  netctxOk("network", "create", "inr", "--driver", "routed", "--internal", "--subnet", "10.66.0.0/24");
  netctxOk("create", "ci", "--level", "l2", "--network", "inr");
  const ci = netctxJson<Inspect>("inspect", "ci");
  const own = ci.addresses[0]!.split("/")[0]!;
  assert.deepEqual(
    routes(4, ci.netns).map((r) => r.dst),
    ["10.66.0.1"],
    "an internal context routes to its gateway only",
  );
  // Left to pick a source itself, the host would take the first global address of another device (nc-back's,
  // from the test above), which the context has no route back to.
  const fromHost = () => ping("/proc/self/ns/net", own);
  assert.ok(fromHost(), "host -> ci");
  // The kernel drops an IPv4 route together with its source address: gc remakes the device and the route.
  execFileSync("ip", ["link", "del", "nc-inr"]);
  assert.equal(
    routes(4).find((r) => r.dst === own),
    undefined,
    "the route went with the gateway address",
  );
  const report = netctxJson<{ actions: { action: string; object: string }[] }>("gc");
  const done = report.actions.map((x) => `${x.action} ${x.object}`);
  assert.ok(done.includes("recreate network inr"), done.join(", "));
  assert.ok(done.includes(`add route ${own}/32 dev nc-ci`), done.join(", "));
  assert.ok(fromHost(), "host -> ci after gc");
  assert.ok(ping(ci.netns, "10.66.0.1"), "ci -> gateway after gc");
  netctxOk("rm", "ci");
  netctxOk("network", "rm", "inr");
});

test("a routed context removed and made again at once, under the engine's queued removals, keeps its elements", () => {
  const host = Host.open(testConfig());
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
