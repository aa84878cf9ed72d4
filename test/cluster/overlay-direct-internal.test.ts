/**
 * `--internal --direct-routing` on the wire (issue 18): two member hosts (h1, h2, engines, etcd on h1) and h3 on the
 * same underlay segment that is no member (the underlay's "outside": the world is routed through it). Contexts on
 * the two members reach each other directly (IPv4 unencapsulated through eth0: the VXLAN devices send nothing; IPv6
 * over VXLAN, the underlay being IPv4), ping and TCP, without NAT. Nothing else gets out: root in a context with a
 * default route of its own reaches neither a peer's underlay address, nor h3's, nor a non-overlay context on h2, nor
 * the world, nor an unallocated address of the network's own subnet; every escape is counted where it would land (an
 * nft counter) and must land nowhere. Nothing gets in from the underlay but the peer's: h3 sending unencapsulated to a
 * context with a source in the peer's block, in the context's own block or elsewhere in the subnet reaches nobody,
 * and neither does h3 sending through h1 to a context on h2 with h1's block as its source.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startCluster, stopCluster, type TestCluster, type TestHost } from "../utils/cluster.ts";
import type { Json } from "../utils/kernel-oracle.ts";
import {
  createContext,
  createOverlay,
  execArgv,
  ipj,
  type Made,
  ok,
  pingFrom,
  run,
  tcpFrom,
  txPackets,
  until,
} from "../utils/overlay-cli.ts";
import { probeArgv, startProbe } from "../utils/socket-probe.ts";
import { sleep } from "../utils/wait.ts";

const NET = "dri";
const DEV = `nv-${NET}`;
const SUBNET = "10.84.0.0/16";
/** An address of h3's standing for the world (h1's default route leads to h3). */
const WORLD = "203.0.113.1";
let c: TestCluster;
let d1: Made;
let d2: Made;
/** A context on h2's local (non-overlay) bridge network. */
let n2: Made;

before(async () => {
  c = await startCluster({ hosts: 3, etcdHosts: [1] });
  await Promise.all([1, 2].map((i) => c.host(i).startEngine("--node-ttl", "3")));
});
after(() => stopCluster());

const blockOf = (m: Made) => `${m.v4.split(".").slice(0, 3).join(".")}.0/24`;
const inBlock = (m: Made, last: number) => `${m.v4.split(".").slice(0, 3).join(".")}.${last}`;

/** An nft counter of packets from the overlay's subnet, made in host h (in netns `ns` of it when given). */
function counter(h: TestHost, ns: string | undefined, match: string): () => number {
  const pre = ns ? ["ip", "netns", "exec", ns] : [];
  const table = `probe${Math.random().toString(36).slice(2, 8)}`;
  run(h, [...pre, "nft", "add", "table", "inet", table]);
  run(h, [
    ...pre,
    "nft",
    "add",
    "chain",
    "inet",
    table,
    "c",
    "{ type filter hook prerouting priority -500; }",
  ]);
  run(h, [...pre, "nft", "add", "rule", "inet", table, "c", ...match.split(" "), "counter"]);
  return () => {
    const out = run(h, [...pre, "nft", "-j", "list", "chain", "inet", table, "c"]);
    const rule = (JSON.parse(out).nftables as Json[]).find((o) => o.rule)?.rule as { expr: Json[] };
    return (rule.expr.find((e) => e.counter)!.counter as { packets: number }).packets;
  };
}

test("internal + direct routing: contexts on two hosts ping and TCP each other directly, IPv6 over VXLAN", async () => {
  await createOverlay(
    c.host(1),
    [c.host(1), c.host(2)],
    NET,
    "--subnet",
    SUBNET,
    "--subnet",
    "fd84::/48",
    "--internal",
    "--direct-routing",
  );
  d1 = await createContext(c.host(1), "d1", "l2", NET);
  d2 = await createContext(c.host(2), "d2", "l2", NET);
  for (const [h, peer] of [
    [c.host(1), d2],
    [c.host(2), d1],
  ] as const) {
    await until(
      `${h.name}'s direct route to ${blockOf(peer)}`,
      () =>
        ipj(h, ["-4", "route", "show", blockOf(peer), "proto", "110"]).some(
          (r) => (r as { gateway?: string; dev: string }).gateway === peer.host.address4 && r.dev === "eth0",
        ),
      8000,
    );
    // The sender check: the peer's underlay MAC (from its node record) stands in the firewall's direct_in4.
    const mac = (ipj(peer.host, ["link", "show", "eth0"])[0] as { address: string }).address;
    await until(
      `${h.name} lets in ${blockOf(peer)} from ${mac}`,
      () =>
        run(h, ["nft", "list", "set", "inet", "netctx", "direct_in4"]).includes(`${blockOf(peer)} . ${mac}`),
      8000,
    );
  }
  const tx = [1, 2].map((i) => txPackets(c.host(i), DEV));
  assert.ok(await pingFrom(d1, d2.v4, 3, 3), "d1 -> d2 over IPv4");
  assert.ok(await pingFrom(d2, d1.v4, 3, 3), "d2 -> d1 over IPv4");
  const p = startProbe(
    execArgv(d2, probeArgv([{ op: "serve", proto: "tcp", port: 7300, hosts: [d2.v4] }, { op: "wait" }])),
  );
  assert.ok((await p.next()).ok, "d2 serves");
  c.adopt(p.child);
  const across = await tcpFrom(d1, d2.v4, 7300, 2000);
  await p.stop();
  assert.equal(
    across.data?.trim(),
    d1.v4,
    `TCP d1 -> d2, seen from d1's own address: ${JSON.stringify(across)}`,
  );
  assert.deepEqual(
    [1, 2].map((i) => txPackets(c.host(i), DEV)),
    tx,
    "IPv4 went directly: no VXLAN device sent a packet",
  );
  assert.ok(await pingFrom(d1, d2.v6!, 3), "d1 -> d2 over IPv6 (VXLAN)");
});

test("root in a context gets nowhere else: not a peer's or another underlay address, a non-overlay context, the world, the subnet's unallocated rest", async () => {
  const [h1, h2, h3] = [c.host(1), c.host(2), c.host(3)];
  // A context on h2 that is not on the overlay, and a road to it from h1; the world (h3) as h1's default route.
  ok(await h2.netctx("network", "create", "loc", "--driver", "bridge", "--subnet", "10.91.0.0/24"), "loc");
  n2 = await createContext(h2, "n2", "l2", "loc");
  run(h1, ["ip", "route", "add", "10.91.0.0/24", "via", h2.address4]);
  run(h1, ["ip", "route", "add", "default", "via", h3.address4]);
  run(h3, ["ip", "addr", "add", `${WORLD}/32`, "dev", "lo"]);
  run(h3, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  // Root inside d1 routes everything to its gateway.
  const gw = (ipj(h1, ["-n", "netctx-d1", "route", "show", SUBNET])[0] as { gateway: string }).gateway;
  run(h1, ["ip", "-n", "netctx-d1", "route", "add", "default", "via", gw]);

  const atH2 = counter(h2, undefined, `ip saddr ${SUBNET} ip daddr ${h2.address4}`);
  const atN2 = counter(h2, "netctx-n2", `ip saddr ${SUBNET}`);
  const atH3 = counter(h3, undefined, `ip saddr ${SUBNET}`);
  // The counters count: the host's own traffic from its gateway address (no context's, no forward hook) lands.
  // (Their answers need not come back: h3 has no route to the subnet.)
  h1.run(["ping", "-n", "-q", "-c", "1", "-W", "1", "-I", gw, h2.address4]);
  h1.run(["ping", "-n", "-q", "-c", "1", "-W", "1", "-I", gw, WORLD]);
  const gw2 = (ipj(h2, ["-n", "netctx-d2", "route", "show", SUBNET])[0] as { gateway: string }).gateway;
  h2.run(["ping", "-n", "-q", "-c", "1", "-W", "1", "-I", gw2, n2.v4]);
  assert.ok(atH2() > 0 && atH3() > 0 && atN2() > 0, `controls: ${atH2()} ${atH3()} ${atN2()}`);
  const landed = () => [atH2(), atN2(), atH3()];
  for (const [what, target] of [
    ["h2's underlay address", h2.address4],
    ["h3's underlay address", h3.address4],
    ["a non-overlay context on h2", n2.v4],
    ["the world", WORLD],
    ["an unallocated address of the subnet", "10.84.250.9"],
  ] as const) {
    const before = landed();
    assert.equal(await pingFrom(d1, target, 1, 2), false, `ping d1 -> ${what}`);
    const r = await tcpFrom(d1, target, 22, 2000);
    assert.equal(r.ok, false, `TCP d1 -> ${what}: ${JSON.stringify(r)}`);
    await sleep(200);
    assert.deepEqual(landed(), before, `a packet from d1 to ${what} landed (at h2, n2, h3)`);
  }
  // The network itself still works with the context's own default route.
  assert.ok(await pingFrom(d1, d2.v4, 3), "d1 -> d2 still");
});

test("from the underlay only the peer gets in: h3 with a source in the network reaches no context, directly or through h1", async () => {
  const [h1, h3] = [c.host(1), c.host(3)];
  const atD1 = counter(h1, "netctx-d1", `ip saddr ${SUBNET} icmp type echo-request`);
  const atD2 = counter(c.host(2), "netctx-d2", `ip saddr ${SUBNET} icmp type echo-request`);
  // The counter counts: the peer's context gets in.
  assert.ok(await pingFrom(d2, d1.v4, 3), "d2 -> d1");
  assert.ok(atD1() > 0, "the peer's ping counted at d1");
  run(h3, ["ip", "route", "add", blockOf(d1), "via", h1.address4]);
  run(h3, ["ip", "route", "add", blockOf(d2), "via", h1.address4]);
  const spoofs = [
    [d2.v4, d1.v4, "d2's own address (the peer's block)"],
    [inBlock(d2, 77), d1.v4, "another address of the peer's block"],
    [inBlock(d1, 77), d1.v4, "an address of d1's own block"],
    ["10.84.250.9", d1.v4, "an unallocated address of the subnet"],
    [inBlock(d1, 78), d2.v4, "h1's block, sent through h1 to d2"],
  ] as const;
  for (const [source, target, what] of spoofs) {
    const before = [atD1(), atD2()];
    run(h3, ["ip", "addr", "add", `${source}/32`, "dev", "lo"]);
    const r = h3.run(["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "-I", source, target]);
    assert.notEqual(r.code, 0, `h3 as ${what} -> ${target} answered`);
    run(h3, ["ip", "addr", "del", `${source}/32`, "dev", "lo"]);
    await sleep(200);
    assert.deepEqual([atD1(), atD2()], before, `h3 as ${what}: an unencapsulated packet reached d1 or d2`);
  }
});
