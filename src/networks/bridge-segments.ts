/**
 * A bridge network past config.bridgeSegmentPorts (128) contexts: later contexts hang off segment bridges, each
 * joined to the network's bridge by a trunk veth. A Linux bridge walks its port list on every port added or removed
 * (port number, features, MTU, GSO limits, promiscuity, the static FDB, STP port states), so adding a context costs
 * O(ports of its bridge): at 1000 ports, 2.2x what it costs at 100. Segments keep every bridge small, and lift the
 * 1023-port limit of one bridge. Contexts on one bridge reach each other in one hop as before; between segments,
 * and from a segment to the gateway, frames cross the trunk. Segments hold no address and are not registered with
 * the firewall: bridged traffic is checked where it meets the network's own bridge (internal networks) and NAT
 * goes by address.
 */
import { createHash } from "node:crypto";
import { type Host, hostSlot } from "../host.ts";
import { KernelError } from "../kernel/errors.ts";
import { writeSysctl } from "../kernel/sysctl.ts";
import { bridgeIfname } from "../model/names.ts";
import type { NetworkRecord } from "../model/records.ts";
import { stableMac } from "../net/cidr.ts";
import { deleteOwnLink, tolerateMissing } from "./common.ts";

/** `nc-XXXXXX.` + b/t/u + k: the '.' never appears in a derived name, so these meet no context's or network's. */
export function segmentPrefix(network: string): string {
  return `nc-${createHash("sha256").update(`netctx-segment:${network}`).digest("hex").slice(0, 6)}.`;
}

function segmentNames(network: string, k: number) {
  const p = segmentPrefix(network);
  return { bridge: `${p}b${k}`, trunk: `${p}t${k}`, trunkPeer: `${p}u${k}` };
}

/**
 * Where a process is filling each network: segment k (0 is the network's own bridge) and its port count. Counting
 * a bridge's ports costs a dump the kernel fills per port (~16 us each), so a process counts once and then keeps
 * count of what it adds itself: another process adding at the same time can push a bridge a few ports past the
 * limit, which costs nothing but a little of what the limit saves.
 */
const FILLING = hostSlot(() => new Map<string, { k: number; ports: number }>());
const filling = (host: Host) => host.cache(FILLING);

/**
 * The bridge a new context's veth joins: the first, from the one being filled on, with room; made when missing.
 * Room is config.bridgeSegmentPorts ports per bridge (contexts, and on the network's bridge its trunks).
 */
export function portBridge(host: Host, net: NetworkRecord): string {
  const limit = host.config.bridgeSegmentPorts;
  const known = filling(host).get(net.name);
  let ports = known?.ports;
  for (let k = known?.k ?? 0; ; k++, ports = undefined) {
    const bridge = k === 0 ? bridgeIfname(net.name) : segmentNames(net.name, k).bridge;
    // Its index only (SIOCGIFINDEX, ~2 us): a bridge's RTM_GETLINK answer carries all its bridge attributes and
    // cost ~0.8 ms of each create (profiled at 50 contexts).
    const index = host.rtnl.linkIndexIfAny(bridge);
    // The network's own bridge missing: the veth's join fails and says so.
    if (index === undefined && k === 0) return bridge;
    if (index === undefined) {
      createSegment(host, net, k);
      ports = 1; // its trunk
    } else ports ??= host.rtnl.linkPortCount(index);
    if (ports >= limit) continue;
    filling(host).set(net.name, { k, ports: ports + 1 });
    return bridge;
  }
}

function createSegment(host: Host, net: NetworkRecord, k: number): void {
  const names = segmentNames(net.name, k);
  try {
    host.rtnl.linkAdd({
      name: names.bridge,
      kind: "bridge",
      mtu: net.mtu,
      ...host.linkMark,
      // A bridge without a MAC of its own recomputes its id over every port as they come and go.
      mac: stableMac(`netctx-segment:${net.name}:${k}`),
      bridge: { multicastSnooping: false },
    });
  } catch (err) {
    // Another process made this segment a moment ago: it is that one's to finish.
    if (err instanceof KernelError && err.errnoName === "EEXIST") return;
    throw err;
  }
  try {
    host.rtnl.linkAdd({
      name: names.trunk,
      kind: "veth",
      mtu: net.mtu,
      ...host.linkMark,
      master: bridgeIfname(net.name),
      peer: { name: names.trunkPeer, mtu: net.mtu },
    });
    host.rtnl.linkSet(names.trunkPeer, { master: names.bridge });
    for (const name of [names.bridge, names.trunk, names.trunkPeer]) {
      withoutIpv6(name);
      host.rtnl.linkSet(name, { up: true });
    }
  } catch (err) {
    for (const name of [names.trunk, names.bridge]) deleteOwnLink(host, name);
    throw err;
  }
}

/**
 * Segments and trunks are plumbing between bridges, with no address of any family. With IPv6 on, each of them would
 * join the all-routers groups (the host forwards) and the segment bridge would make a link-local address, and their
 * MLD reports are multicast: flooded to every port of both bridges, a few times over, through br_netfilter (at 1000
 * contexts, 5% of the CPU while contexts were being made). A sysctl write, not netlink (which cannot switch IPv6 off),
 * costs O(namespaces) (see setLinkLocal), but only three times per bridgeSegmentPorts contexts.
 */
function withoutIpv6(ifname: string): void {
  try {
    writeSysctl(`net/ipv6/conf/${ifname}/disable_ipv6`, "1");
  } catch (err) {
    // A kernel without IPv6 has no such file, and no MLD either.
    if (!(err instanceof KernelError && err.errnoName === "ENOENT")) throw err;
  }
}

/** Deletes every segment and trunk of a network (its contexts are gone or going). */
export function removeSegments(host: Host, network: string): void {
  const prefix = segmentPrefix(network);
  filling(host).delete(network);
  for (const link of host.rtnl.linkList())
    if (link.name.startsWith(prefix) && !link.name.startsWith(`${prefix}u`))
      tolerateMissing(() => host.rtnl.linkDel(link.name));
}
