/**
 * The overlay data path at scale, by simulation (issue 18's bench in miniature): 1000 peers whose underlay addresses
 * sit in a test range nothing answers. All of their entries are programmed in <= 2 s, and afterwards one peer joining,
 * leaving or changing costs a fixed number of kernel requests, whatever the number of others (counted, not timed).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Host } from "../../src/host.ts";
import {
  ensureOverlayDevice,
  OVERLAY_ROUTE_PROTOCOL,
  type OverlayLocal,
  type OverlayPeer,
  removeOverlayDevice,
  syncPeers,
} from "../../src/networks/overlay-peers.ts";
import { testConfig } from "../utils/config.ts";
import { ipj } from "../utils/kernel-oracle.ts";
import { must } from "../utils/shell.ts";

const host = Host.open(testConfig());
after(() => host.close());

const local: OverlayLocal = {
  network: "sim",
  vni: 4200,
  underlay: "10.200.0.1",
  underlayDev: "ul0",
  blocks: ["10.64.0.0/24", "fd99::/64"],
  subnets: ["10.64.0.0/10", "fd99::/48"],
};

const hex = (n: number) => n.toString(16).padStart(2, "0");
function peer(i: number, over: Partial<OverlayPeer> = {}): OverlayPeer {
  return {
    node: `n${i}`,
    underlay: `10.200.${1 + (i >> 8)}.${i & 255}`,
    vtepMac: `02:00:00:00:${hex(i >> 8)}:${hex(i & 255)}`,
    blocks: [`10.${64 + (i >> 8)}.${i & 255}.0/24`, `fd99:0:${i.toString(16)}::/64`],
    ...over,
  };
}

const proto = String(OVERLAY_ROUTE_PROTOCOL);
const ourRoutes = (family: 4 | 6) => ipj([`-${family}`, "route", "show", "proto", proto]);
const permanentNeighbours = () =>
  ipj(["neigh", "show", "dev", "nv-sim"]).filter((n) => (n.state as string[]).includes("PERMANENT"));
const fdbEntries = () =>
  JSON.parse(must(["bridge", "-j", "fdb", "show", "dev", "nv-sim"]) || "[]") as unknown[];

before(() => {
  must(["ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul0p"]);
  must(["ip", "link", "set", "ul0", "up"]);
  must(["ip", "link", "set", "ul0p", "up"]);
  must(["ip", "addr", "add", "10.200.0.1/16", "dev", "ul0"]);
});

test("the device: vxlan with the settings asked for, underlay MTU less 50, VTEP addresses of the blocks", () => {
  const dev = ensureOverlayDevice(host, local);
  assert.equal(dev.ifname, "nv-sim");
  const [link] = ipj(["-d", "link", "show", "nv-sim"]);
  assert.ok(link);
  const data = (link.linkinfo as { info_data: Record<string, unknown> }).info_data;
  assert.equal(data.id, 4200);
  assert.equal(data.port, 4789);
  assert.equal(data.local, "10.200.0.1");
  assert.equal(data.link, "ul0");
  assert.equal(data.learning, false);
  assert.equal(link?.mtu, 1450);
  assert.equal(link?.address, dev.mac);
  assert.equal(Number(link?.group), 0x6e63, "carries the link group of everything netctx makes");
  assert.match(String(link?.ifalias), /^netctx store /);
  const addrs = ipj(["addr", "show", "dev", "nv-sim"]).flatMap(
    (a) => a.addr_info as { local: string; prefixlen: number; scope: string }[],
  );
  assert.deepEqual(
    addrs.map((a) => `${a.local}/${a.prefixlen}`),
    ["10.64.0.0/32", "fd99::/128"],
    "VTEP addresses only: no link-local address",
  );
  // Again: nothing changes, the same device.
  assert.deepEqual(ensureOverlayDevice(host, local), dev);
  // An explicit MTU wins.
  assert.equal(ensureOverlayDevice(host, { ...local, mtu: 1400 }).mtu, 1400);
  assert.equal(ipj(["link", "show", "nv-sim"])[0]?.mtu, 1400);
  ensureOverlayDevice(host, local);
});

test("1000 peers programmed in <= 2 s; a join, a leave and a change cost a fixed number of requests", () => {
  const peers = Array.from({ length: 1000 }, (_, i) => peer(i + 1));
  const t0 = performance.now();
  const first = syncPeers(host, local, peers);
  const ms = performance.now() - t0;
  console.log(`1000 peers: ${ms.toFixed(0)} ms, ${first.kernelOps} requests`);
  assert.ok(ms <= 2000, `took ${ms} ms`);
  assert.deepEqual(first.skipped, []);
  assert.deepEqual(first.failed, []);
  assert.equal(first.added, 5000);
  assert.equal(first.kernelOps, 5000, "per peer: 2 routes, 2 neighbours, 1 FDB entry");
  assert.equal(ourRoutes(4).length, 1000);
  assert.equal(ourRoutes(6).length, 1000);
  assert.equal(permanentNeighbours().length, 2000);
  assert.equal(fdbEntries().length, 1000);

  const same = syncPeers(host, local, peers);
  assert.deepEqual([same.kernelOps, same.reads], [0, 0], "nothing changed: no request at all");

  const joined = syncPeers(host, local, [...peers, peer(1001)]);
  assert.deepEqual([joined.added, joined.removed, joined.kernelOps], [5, 0, 5]);
  const left = syncPeers(host, local, [...peers.filter((p) => p.node !== "n500"), peer(1001)]);
  assert.deepEqual([left.added, left.removed, left.kernelOps], [0, 5, 5]);
  assert.equal(ourRoutes(4).length, 1000);
  assert.ok(!ourRoutes(4).some((r) => r.dst === peer(500).blocks[0]), "n500's route went");
  assert.equal(fdbEntries().length, 1000);

  const now = [...peers.filter((p) => p.node !== "n500"), peer(1001)];
  // A peer's underlay address moves: its FDB entry alone changes.
  const moved = now.map((p) => (p.node === "n7" ? { ...p, underlay: "10.200.9.9" } : p));
  const move = syncPeers(host, local, moved);
  assert.deepEqual([move.changed, move.kernelOps], [1, 1]);
  // Direct routing for one peer: its IPv4 block's route moves to the underlay device, its IPv4 neighbour goes.
  const direct = moved.map((p) => (p.node === "n8" ? { ...p, direct: true } : p));
  const d = syncPeers(host, local, direct);
  assert.deepEqual([d.changed, d.removed, d.kernelOps], [1, 1, 2]);
  assert.deepEqual(
    ipj(["-4", "route", "show", "10.64.8.0/24"]).map((r) => `${r.gateway} ${r.dev}`),
    ["10.200.1.8 ul0"],
  );

  // Another Host (a restarted engine) observes the kernel once, then finds nothing to do.
  const again = Host.open(testConfig());
  try {
    const t1 = performance.now();
    const observed = syncPeers(again, local, direct);
    console.log(`observing 5000 entries: ${(performance.now() - t1).toFixed(0)} ms`);
    assert.deepEqual([observed.kernelOps, observed.reads], [0, 4]);
    const back = syncPeers(again, local, moved);
    assert.deepEqual([back.changed, back.added, back.kernelOps], [1, 1, 2]);
  } finally {
    again.close();
  }
});

test("peers that cannot be routed are skipped with a reason, the others made", () => {
  // Another Host wrote last: this one looks at the kernel again rather than trust what it made.
  const r = syncPeers(
    host,
    local,
    [
      peer(1),
      peer(2, { blocks: ["10.64.0.0/25"] }),
      peer(3, { vtepMac: "" }),
      peer(4, { underlay: "fd00::4" }),
      peer(5, { vtepMac: peer(1).vtepMac }),
      peer(6, { blocks: peer(1).blocks }),
      peer(7, { underlay: "10.200.0.1" }),
    ],
    { observe: true },
  );
  assert.deepEqual(
    r.skipped.map((s) => s.node),
    ["n2", "n3", "n4", "n5", "n6"],
  );
  assert.match(r.skipped[0]!.reason, /10\.64\.0\.0\/25 is this host's/);
  assert.match(r.skipped[1]!.reason, /no VTEP MAC/);
  assert.match(r.skipped[2]!.reason, /IPv6, this host's IPv4/);
  assert.equal(ourRoutes(4).length, 1, "only n1's (n7 is this host)");
});

test("removing the overlay takes its direct routes and the device", () => {
  syncPeers(host, local, [peer(1, { direct: true }), peer(2)]);
  assert.equal(ourRoutes(4).length, 2);
  const r = removeOverlayDevice(host, local);
  assert.equal(r.removed, 9, "n1: its direct route, IPv6 route, IPv6 neighbour, FDB entry; n2: 5");
  assert.deepEqual(ourRoutes(4), []);
  assert.ok(!ipj(["link", "show"]).some((l) => l.ifname === "nv-sim"));
});
