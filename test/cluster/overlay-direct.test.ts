/**
 * `--direct-routing` on the wire (issue 18): three test hosts on one underlay segment (test/utils/cluster.ts), their
 * engines on one etcd member. Each host routes the other hosts' IPv4 blocks via the peer's underlay address on its
 * underlay device (protocol 110, OVERLAY_ROUTE_PROTOCOL), holds no VXLAN route for them, and an IPv4 ping across
 * hosts leaves the VXLAN device's tx counter where it was; IPv6 blocks still go over VXLAN (the underlay is IPv4).
 * With `--internal` too: overlay-direct-internal.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startCluster, stopCluster, type TestCluster } from "../utils/cluster.ts";
import type { Json } from "../utils/kernel-oracle.ts";
import {
  createContext,
  createOverlay,
  ipj,
  type Made,
  pingFrom,
  txPackets,
  until,
} from "../utils/overlay-cli.ts";

const NET = "dr";
const DEV = `nv-${NET}`;
let c: TestCluster;

before(async () => {
  c = await startCluster({ hosts: 3, etcdHosts: [1] });
  await Promise.all([1, 2, 3].map((i) => c.host(i).startEngine("--node-ttl", "3")));
});
after(() => stopCluster());

const made: Made[] = [];

/** Our routes (protocol 110) on the underlay device of host i, as "DST via GW dev DEV". */
function directRoutes(i: number): string[] {
  return ipj(c.host(i), ["-4", "route", "show", "proto", "110"])
    .map((r: Json) => r as { dst: string; gateway?: string; dev: string })
    .map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}`)
    .sort();
}

test("direct routing: peer blocks via the peer's underlay address on the underlay device, protocol 110, none over VXLAN", async () => {
  await createOverlay(
    c.host(1),
    c.hosts,
    NET,
    "--subnet",
    "10.82.0.0/16",
    "--subnet",
    "fd82::/48",
    "--direct-routing",
  );
  for (const i of [1, 2, 3]) made.push(await createContext(c.host(i), `d${i}`, "l2", NET));
  const blockOf = (m: Made) => `${m.v4.split(".").slice(0, 3).join(".")}.0/24`;
  for (const i of [1, 2, 3]) {
    const want = made
      .filter((m) => m.host.index !== i)
      .map((m) => `${blockOf(m)} via ${m.host.address4} dev eth0`)
      .sort();
    await until(
      `h${i}'s direct routes`,
      () => JSON.stringify(directRoutes(i)) === JSON.stringify(want),
      8000,
    );
    const vxlan4 = ipj(c.host(i), ["-4", "route", "show", "dev", DEV]).map((r) => (r as { dst: string }).dst);
    for (const m of made)
      if (m.host.index !== i) assert.ok(!vxlan4.includes(blockOf(m)), `h${i}: ${blockOf(m)} over VXLAN`);
    // IPv6 blocks still go over VXLAN: the underlay is IPv4.
    await until(
      `h${i}'s IPv6 routes over VXLAN`,
      () => ipj(c.host(i), ["-6", "route", "show", "dev", DEV, "proto", "110"]).length === 2,
      8000,
    );
  }
});

test("direct routing: an IPv4 ping across hosts works and the VXLAN devices send nothing; IPv6 goes over VXLAN", async () => {
  const [d1, d2, d3] = made as [Made, Made, Made];
  const tx = [1, 2, 3].map((i) => txPackets(c.host(i), DEV));
  assert.ok(await pingFrom(d1, d2.v4, 3, 3), "h1 -> h2 over IPv4");
  assert.ok(await pingFrom(d3, d1.v4, 3, 3), "h3 -> h1 over IPv4");
  assert.ok(await pingFrom(d2, d3.v4, 3, 3), "h2 -> h3 over IPv4");
  assert.deepEqual(
    [1, 2, 3].map((i) => txPackets(c.host(i), DEV)),
    tx,
    "no host's VXLAN device sent a packet",
  );
  assert.ok(await pingFrom(d1, d2.v6!, 3), "h1 -> h2 over IPv6");
  assert.ok(txPackets(c.host(1), DEV) > tx[0]!, "IPv6 went over VXLAN");
});
