/**
 * Issue 15, escapes 8 and 9: root inside an l2 context x on a bridge network must not steer the traffic of another
 * context y on it. x crafts the frames itself (a packet socket, through `netctx exec`); y's routes, neighbours and
 * wire are the proof.
 *  - A rogue Router Advertisement (CVE-2020-13401 in Docker) must not give y a default route through x: the bridge
 *    drops RAs and redirects from context ports, and contexts keep accept_ra=0 and accept_redirects=0, so even one
 *    that reaches y (here: sent by the host onto the bridge) changes nothing.
 *  - A Neighbour Advertisement for the gateway, sent unicast to y, must not reach y through the bridge shortcut
 *    (which would skip the bridge's ND target rule) and poison y's entry for the gateway.
 *  - The shortcut passes no ND, RA or redirect and no VLAN-tagged frame: they take the bridge and its rules.
 * Every check holds again after `nft flush ruleset` and `netctx repair`.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { ProgType } from "../../src/kernel/bpf/abi.ts";
import { Asm, R1 } from "../../src/kernel/bpf/asm.ts";
import {
  attachProgram,
  detachProgram,
  loadProgram,
  progFdById,
  progInfo,
  queryPrograms,
} from "../../src/kernel/bpf/attach.ts";
import { mapFdById } from "../../src/kernel/bpf/maps.ts";
import { closeFd } from "../../src/kernel/bpf/syscall.ts";
import { Rtnl } from "../../src/kernel/rtnl.ts";
import { linkLocalOf } from "../../src/net/cidr.ts";
import { netctxJson, netctxOk } from "../utils/cli.ts";
import {
  type IpAddr,
  type IpLink,
  type IpRoute,
  ipj,
  ipLink,
  neighbourMac as neighbourMacIn,
  routes,
  sentDuring,
} from "../utils/kernel-oracle.ts";
import { inNetns, contextNetns as ns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";
import { type Frame, type Seen, sendFrames, sniffDuring } from "./frames.ts";

const X = { name: "hx", v4: "10.71.0.10", v6: "fd71::10", mac: "02:00:00:71:00:10" };
const Y = { name: "hy", v4: "10.71.0.11", v6: "fd71::11", mac: "02:00:00:71:00:11" };
const GW = { v4: "10.71.0.1", v6: "fd71::1" };
const ALL_NODES = { mac: "33:33:00:00:00:01", ip: "ff02::1" };
function inNs(ctx: string, argv: string[]): string {
  const inside = inNetns(ns(ctx), argv);
  return execFileSync(inside[0]!, inside.slice(1), { encoding: "utf8" });
}

/** y's IPv6 routes that an RA made or that lead through a link-local next hop (none of ours do). */
function foreignRoutes(ctx: string): IpRoute[] {
  return routes(6, ns(ctx)).filter((r) => r.protocol === "ra" || r.gateway?.startsWith("fe80"));
}

function addresses6(ctx: string): string[] {
  return ipj<IpAddr>(["-6", "addr", "show", "dev", "eth0"], ns(ctx)).flatMap((a) =>
    a.addr_info.map((i) => i.local),
  );
}

const neighbourMac = (ctx: string, ip: string) => neighbourMacIn(ip, { netns: ns(ctx) });

function sysctl(ctx: string, key: string): string {
  return inNs(ctx, ["cat", `/proc/sys/net/${key}`]).trim();
}

const bridgeMac = () => ipLink<IpLink>("nc-hb").address!;

/** An RA from `src` (x's link-local unless told) offering a default route through x and the prefix fd99::/64. */
function routerAdvert(to: { mac: string; ip: string }, src = linkLocalOf(X.mac), srcMac = X.mac): Frame {
  return { kind: "ra", srcMac, dstMac: to.mac, src, dst: to.ip, prefix: "fd99::" };
}

/** The NA that poisons: x, with its own MAC and address, says the gateway's address is at x's MAC. */
function poisonNa(to: { mac: string; ip: string }): Frame {
  return { kind: "na", srcMac: X.mac, dstMac: to.mac, src: X.v6, dst: to.ip, target: GW.v6 };
}

function marker(data: string, vlan?: number): Frame {
  return {
    kind: "udp4",
    srcMac: X.mac,
    dstMac: Y.mac,
    src: X.v4,
    dst: Y.v4,
    port: 9,
    data,
    ...(vlan === undefined ? {} : { vlan }),
  };
}

test("setup: a bridge network with IPv6 and two l2 contexts x and y", () => {
  netctxOk(
    "network",
    "create",
    "hb",
    "--driver",
    "bridge",
    "--subnet",
    "10.71.0.0/24",
    "--subnet",
    "fd71::/64",
  );
  for (const c of [X, Y])
    netctxOk(
      "create",
      c.name,
      "--level",
      "l2",
      "--network",
      "hb",
      "--ip",
      c.v4,
      "--ip",
      c.v6,
      "--mac",
      c.mac,
    );
  // Neighbours resolved, and the shortcut on between x and y: frames it would carry are tested below.
  assert.ok(ping(ns(Y.name), GW.v6) && ping(ns(Y.name), X.v6) && ping(ns(Y.name), X.v4));
  const shortcut = netctxJson<{ shortcut?: { state: string; macs?: string[] } }>(
    "network",
    "inspect",
    "hb",
  ).shortcut;
  assert.deepEqual(shortcut, { state: "on", macs: [X.mac, Y.mac] });
});

test("contexts on a bridge network keep accept_ra=0 and accept_redirects=0 (v4 and v6)", () => {
  for (const key of [
    "ipv6/conf/eth0/accept_ra",
    "ipv6/conf/default/accept_ra",
    "ipv6/conf/eth0/accept_redirects",
    "ipv4/conf/eth0/accept_redirects",
    "ipv4/conf/all/accept_redirects",
  ])
    assert.equal(sysctl(Y.name, key), "0", key);
});

function rogueRaChangesNothing(): void {
  assert.deepEqual(foreignRoutes(Y.name), []);
  sendFrames({ ctx: X.name }, [
    routerAdvert(ALL_NODES),
    routerAdvert({ mac: Y.mac, ip: linkLocalOf(Y.mac) }),
  ]);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
  assert.deepEqual(foreignRoutes(Y.name), [], "y took a route from x's Router Advertisement");
  assert.ok(!addresses6(Y.name).some((a) => a.startsWith("fd99:")), "y configured x's advertised prefix");
}

test("a rogue Router Advertisement from x gives y no route and no address", () => {
  rogueRaChangesNothing();
});

test("an RA that reaches y anyway (sent by the host onto the bridge) is ignored: accept_ra=0", () => {
  sendFrames({ hostIfname: "nc-hb" }, [routerAdvert(ALL_NODES, "fe80::1", bridgeMac())]);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
  assert.deepEqual(foreignRoutes(Y.name), [], "y accepted a Router Advertisement");
});

test("an ICMP redirect that reaches y anyway (from its own gateway) is ignored: accept_redirects=0", () => {
  assert.ok(ping(ns(Y.name), X.v4));
  sendFrames({ hostIfname: "nc-hb" }, [
    {
      kind: "redirect4",
      srcMac: bridgeMac(),
      dstMac: Y.mac,
      src: GW.v4,
      dst: Y.v4,
      gateway: X.v4,
      dest: "10.99.0.5",
    },
  ]);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
  const route = inNs(Y.name, ["ip", "route", "get", "10.99.0.5"]);
  assert.match(route, new RegExp(`via ${GW.v4.replaceAll(".", "\\.")} `), route);
});

function poisonedNaChangesNothing(): void {
  assert.ok(ping(ns(Y.name), GW.v6));
  const gatewayMac = neighbourMac(Y.name, GW.v6);
  assert.equal(gatewayMac, bridgeMac());
  // Unicast to y's MAC (the shortcut's case) and to all nodes (the bridge's).
  sendFrames({ ctx: X.name }, [poisonNa({ mac: Y.mac, ip: Y.v6 }), poisonNa(ALL_NODES)]);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
  assert.equal(
    neighbourMac(Y.name, GW.v6),
    gatewayMac,
    "y's neighbour entry for the gateway now names x's MAC",
  );
  assert.ok(ping(ns(Y.name), GW.v6));
}

test("a Neighbour Advertisement from x claiming the gateway does not reach y, short or through the bridge", () => {
  poisonedNaChangesNothing();
});

/** What of x's hostile frames reaches y's wire: only the plain datagram that ends the run may. */
async function hostileFramesSeen(): Promise<Seen[]> {
  const xLinkLocal = linkLocalOf(X.mac);
  const toY = { mac: Y.mac, ip: Y.v6 };
  const seen = await sniffDuring(Y.name, X.mac, () =>
    sendFrames({ ctx: X.name }, [
      // With x's own global address as source, unicast to y: what the shortcut would carry.
      routerAdvert(toY, X.v6),
      {
        kind: "redirect6",
        srcMac: X.mac,
        dstMac: Y.mac,
        src: X.v6,
        dst: Y.v6,
        target: X.v6,
        dest: "fd99::5",
      },
      {
        kind: "redirect4",
        srcMac: X.mac,
        dstMac: Y.mac,
        src: X.v4,
        dst: Y.v4,
        gateway: X.v4,
        dest: "10.99.0.5",
      },
      // With x's link-local source, as a router would send them: the bridge's case.
      routerAdvert(ALL_NODES, xLinkLocal),
      {
        kind: "redirect6",
        srcMac: X.mac,
        dstMac: Y.mac,
        src: xLinkLocal,
        dst: linkLocalOf(Y.mac),
        target: xLinkLocal,
        dest: "fd99::5",
      },
      // 802.1Q: a priority tag (VID 0) would reach y's IP stack; VID 5 would reach a VLAN device y could make.
      marker("vlan0", 0),
      marker("vlan5", 5),
      marker("end"),
    ]),
  );
  assert.ok(
    seen.some((s) => s.udp === "end" && !s.vlan),
    `the plain datagram did not arrive: ${JSON.stringify(seen)}`,
  );
  // x's own ARP and ND (it answers y) may pass; none of what it crafted above may.
  return seen.filter(
    (s) =>
      s.vlan ||
      (s.udp !== undefined && s.udp !== "end") ||
      (s.family === 4 && s.icmp === 5) ||
      (s.family === 6 && (s.icmp === 134 || s.icmp === 137)),
  );
}

test("RAs, redirects (ICMPv6 134, 137; ICMPv4 5) and VLAN-tagged frames from x never reach y", async () => {
  assert.deepEqual(await hostileFramesSeen(), []);
});

test("after `nft flush ruleset` and `netctx repair` all of it holds again", async () => {
  execFileSync("nft", ["flush", "ruleset"]);
  netctxOk("repair");
  assert.deepEqual(await hostileFramesSeen(), []);
  poisonedNaChangesNothing();
  rogueRaChangesNothing();
});

/** Of 50 pings from x to y, how many requests y's host-side veth carried (none when they went short). */
function requestsThroughBridge(): number {
  return sentDuring(`nc-${Y.name}`, () =>
    inNs(X.name, ["ping", "-n", "-q", "-c", "50", "-i", "0.002", "-W", "1", Y.v4]),
  );
}

function tcxProgramNames(ifindex: number): string[] {
  return queryPrograms(ifindex, "TCX_INGRESS").map((id) => {
    const fd = progFdById(id);
    try {
      return progInfo(fd).name;
    } finally {
      closeFd(fd);
    }
  });
}

test("a network whose bridge holds an earlier shortcut program gets the current one on its next use", async () => {
  // Make the network look like one an earlier netctx made: on the bridge and as the ports' block filter, a
  // program of the earlier name over the same map (one that sends everything through the bridge).
  const bridge = ipLink<IpLink>("nc-hb").ifindex;
  const [current] = queryPrograms(bridge, "TCX_INGRESS");
  const currentFd = progFdById(current!);
  const mapFd = mapFdById(progInfo(currentFd).mapIds[0]!);
  const earlier = new Asm().ldMapFd(R1, mapFd).ret(-1);
  const earlierFd = loadProgram({
    name: "nctx_shortcut",
    progType: ProgType.SCHED_CLS,
    attachType: "TCX_INGRESS",
    insns: earlier.assemble(),
  });
  const rtnl = Rtnl.open();
  try {
    attachProgram(bridge, earlierFd, "TCX_INGRESS", 0);
    rtnl.blockProgramAdd(bridge, earlierFd, "nctx_shortcut", true);
    detachProgram(bridge, currentFd, "TCX_INGRESS");
  } finally {
    rtnl.close();
    for (const fd of [currentFd, mapFd, earlierFd]) closeFd(fd);
  }
  assert.deepEqual(tcxProgramNames(bridge), ["nctx_shortcut"]);
  assert.ok(requestsThroughBridge() >= 50, "the earlier program still sent frames short");

  // Any use of the network (here inspect) puts the current program in its place, map and entries kept.
  const view = netctxJson<{ shortcut?: { state: string; macs?: string[] } }>("network", "inspect", "hb");
  assert.deepEqual(view.shortcut, { state: "on", macs: [X.mac, Y.mac] });
  assert.deepEqual(tcxProgramNames(bridge), ["nctx_shortcut_4"]);
  const through = requestsThroughBridge();
  assert.ok(through < 10, `${through} of 50 requests still took the bridge`);
  assert.deepEqual(await hostileFramesSeen(), []);
  poisonedNaChangesNothing();
});

test("teardown", () => {
  netctxOk("rm", X.name, Y.name);
  netctxOk("network", "rm", "hb");
});
