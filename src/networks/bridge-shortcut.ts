/**
 * A shortcut past the bridge for traffic between the contexts of one bridge network: a BPF program on each
 * context's host-side veth (ingress) hands a unicast IPv4/IPv6 frame addressed to another context's MAC straight
 * to that context's interface (bpf_redirect_peer), as Cilium does. The frame then crosses one veth, as on a raw
 * veth pair, instead of veth, bridge and veth, and skips br_netfilter, which on kernels that have it loaded puts
 * every bridged frame through the inet hooks and conntrack (bench: 0.77x of a raw veth pair through the bridge).
 *
 * Frames for the gateway (the bridge's own MAC: what a context sends off its network) go short too, into the bridge
 * (bpf_redirect with BPF_F_INGRESS): the bridge receives them as if they had come up from the port, and the host
 * routes and filters them as before, with iif = the bridge (every rule of ours that names the bridge still matches;
 * br_netfilter's inet pass at bridge prerouting sees iif = the bridge too). What they skip is that pass, br_netfilter
 * running the inet hooks and conntrack on top of the host's own routing (overlay bench, VXLAN: 0.78x -> 0.83x of
 * the underlay).
 *
 * Only frames that pass the anti-spoofing check go short: the sender's MAC must be the one its port was given and
 * its IP source the first address of its family there. Anything else (ARP, multicast, frames to other MACs, other
 * sources such as link-local ones) takes the bridge, whose anti-spoofing rules decide as before.
 * So do the frames whose check looks past the sender (issue 15): Neighbour Discovery, RAs and redirects (ICMPv6
 * 133-137, ICMPv4 5), whose rules check an advertisement's target or drop them outright (short, a context's
 * Neighbour Advertisement for the gateway's address reached another context and took over its neighbour entry);
 * every IPv6 packet that is not plain TCP, UDP or ICMPv6, since an extension header can carry ND further in; IPv4
 * with options; and VLAN-tagged frames, which the bridge drops but whose tag the kernel has already moved out of
 * the frame into the skb when tc sees it (one with VID 0, a priority tag, the receiver takes as untagged).
 * A context with bandwidth limits never goes short (the redirect would skip its ifb and its veth's root qdisc).
 *
 * On an overlay network the same program also routes a context's packets for other nodes' blocks past the host, and a
 * program of its own on the VXLAN (and underlay) device hands peers' packets to the context's port: BPF host
 * routing, shortcut-routing.ts, with the network's subnets in this map under reserved keys (ifindex 0).
 *
 * One hash map per network, MAC -> { host veth ifindex, IPv4, IPv6 }, and one program using it: the cls_bpf filter
 * of the ingress tc block all the network's ports share (kernel/tc.ts, port-blocks.ts), behind the policy's filter, and a tcx attachment on the network's bridge, where
 * it holds map and program for later processes: those find it by querying the bridge's tcx programs (no bpffs needed). On the
 * bridge it sees frames going up to the host, among them those it handed the bridge itself, which never pass its port
 * check (so they are not handed over again). The program carries the bridge's ifindex and MAC: a bridge made again
 * (gc) moves its ports to blocks and a program of its own (port-blocks.ts rejoinPortBlocks). Where the kernel refuses any
 * of it (tcx needs 6.6, bpf_redirect_peer 5.10) the network simply works through its bridge.
 */

import { type Host, hostSlot } from "../host.ts";
import { BPF_F_INGRESS, Helper, ProgType, SkBuff } from "../kernel/bpf/abi.ts";
import { Asm, R0, R1, R2, R3, R6, R7, R8 } from "../kernel/bpf/asm.ts";
import {
  attachProgram,
  detachProgram,
  loadProgram,
  progFdById,
  progInfo,
  queryPrograms,
} from "../kernel/bpf/attach.ts";
import { createHashMap, mapDelete, mapEntries, mapFdById, mapInfo, mapUpdate } from "../kernel/bpf/maps.ts";
import type { ProgramSpec } from "../kernel/bpf/program-spec.ts";
import { closeFd } from "../kernel/bpf/syscall.ts";
import { KernelError } from "../kernel/errors.ts";
import { formatMac, parseMac } from "../kernel/netlink.ts";
import { BLOCK_PREF } from "../kernel/tc.ts";
import { bridgeIfname } from "../model/names.ts";
import { ipBytes, parseIp } from "../net/cidr.ts";
import type { Attachment } from "./driver.ts";
import {
  CONFIG_KEYS,
  configEntries,
  routeInbound,
  routeOnward,
  type ShortcutRoute,
} from "./shortcut-routing.ts";

export type { ShortcutRoute } from "./shortcut-routing.ts";

/**
 * The program's name carries its version: bump it whenever the program changes. A bridge found holding an earlier
 * one (a network made by an earlier netctx) gets the current one on its next use, with the same map (upgrade()):
 * otherwise a fix to the program, such as issue 15's, would reach only networks made after it. Version 4: the same
 * program, its filter moved from preference 1 to BLOCK_PREF.shortcut, behind the policy's.
 */
const PROGRAM_NAME = "nctx_shortcut_4";
const PROGRAM_STEM = "nctx_shortcut";
const KEY_SIZE = 6;
/** ifindex u32 @0, IPv4 @4, IPv6 @8, addresses in network byte order; zero = none of that family. */
const VALUE_SIZE = 24;
const MAX_ENTRIES = 65536;
/** The inbound program of an overlay network (shortcut-routing.ts); versioned as PROGRAM_NAME is. */
const INBOUND_NAME = "nctx_inbound_1";
const INBOUND_STEM = "nctx_inbound";

/** TCX_NEXT on the bridge, TC_ACT_UNSPEC in the ports' block: go on with the next program, then the stack (the bridge). */
const TCX_NEXT = -1;

/** struct __sk_buff's vlan_present (u32): the kernel untags before tc runs, the frame's EtherType is the inner one. */
const SKB_VLAN_PRESENT = 20;

const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_ICMP = 1;
const IPPROTO_ICMPV6 = 58;
const ICMP_REDIRECT = 5;
/** Router Solicitation .. Redirect: the Neighbour Discovery messages (RFC 4861). */
const ND_FIRST = 133;
const ND_LAST = 137;

/** EtherType as the little-endian u16 load of its two bytes sees it; headers to check; IP source offset. */
const FAMILIES = [
  { family: 4, ethertype: 0x0008, headers: 14 + 20, source: 14 + 12, words: 1, value: 4 },
  { family: 6, ethertype: 0xdd86, headers: 14 + 40, source: 14 + 8, words: 4, value: 8 },
] as const;

/** The network's bridge: the gateway's MAC is its own, and frames for the gateway are handed to it. */
interface Gateway {
  ifindex: number;
  mac: Uint8Array;
}

/**
 * Both programs' start: skb in R6, data in R7, data_end in R8; an untagged frame with a whole Ethernet header and an
 * IPv4 or IPv6 EtherType goes on at label v4 or v6, anything else to "next" (the stack).
 */
function etherDispatch(a: Asm): void {
  a.mov64Reg(R6, R1);
  a.ldx("w", R7, R6, SkBuff.data);
  a.ldx("w", R8, R6, SkBuff.dataEnd);
  a.mov64Reg(R2, R7).alu64Imm("add", R2, 14).jmpReg("gt", R2, R8, "next");
  a.ldx("w", R2, R6, SKB_VLAN_PRESENT).jmp32Imm("ne", R2, 0, "next");
  a.ldx("h", R2, R7, 12);
  for (const f of FAMILIES) a.jmp32Imm("eq", R2, f.ethertype, `v${f.family}`);
  a.ja("next");
}

function shortcutProgram(mapFd: number, gateway: Gateway): ProgramSpec {
  // The gateway's MAC as the little-endian u32 and u16 loads of its bytes 0-3 and 4-5 see it.
  const mac = new DataView(gateway.mac.buffer, gateway.mac.byteOffset, 6);
  const gatewayLow = mac.getUint32(0, true);
  const gatewayHigh = mac.getUint16(4, true);
  const a = new Asm();
  etherDispatch(a);
  for (const f of FAMILIES) {
    a.label(`v${f.family}`);
    // The headers must be in the linear part for direct reads; a frame where they are not takes the bridge.
    a.mov64Reg(R2, R7).alu64Imm("add", R2, f.headers).jmpReg("gt", R2, R8, "next");
    if (f.family === 4) ipv4Payload(a);
    else ipv6Payload(a);
    // The sender: its source MAC is a context of this network, on the port the frame came in by...
    a.ldMapFd(R1, mapFd).mov64Reg(R2, R7).alu64Imm("add", R2, 6).call(Helper.map_lookup_elem);
    a.jmpImm("eq", R0, 0, "next");
    a.ldx("w", R2, R0, 0).ldx("w", R3, R6, SkBuff.ifindex).jmp32Reg("ne", R2, R3, "next");
    // ...and its IP source is that context's address (the first word is never zero for a real one).
    a.ldx("w", R2, R0, f.value).jmp32Imm("eq", R2, 0, "next");
    for (let w = 0; w < f.words; w++)
      a.ldx("w", R2, R0, f.value + 4 * w)
        .ldx("w", R3, R7, f.source + 4 * w)
        .jmp32Reg("ne", R2, R3, "next");
    // The receiver is the gateway: the bridge receives the frame as if it had come up from its port (the header
    // comment says what that skips). On the bridge's own ingress the frame meets this program again, where its
    // sender fails the port check above: that check is also what keeps it from being handed over in a loop.
    a.ldx("w", R2, R7, 0).jmp32Imm("ne", R2, gatewayLow, `peer${f.family}`);
    a.ldx("h", R2, R7, 4).jmp32Imm("ne", R2, gatewayHigh, `peer${f.family}`);
    // An overlay network's packet to a peer's block goes straight to the device the host routes it out of.
    routeOnward(a, mapFd, f.family, gateway.ifindex, `gateway${f.family}`);
    a.label(`gateway${f.family}`);
    a.mov64Imm(R1, gateway.ifindex).mov64Imm(R2, BPF_F_INGRESS).call(Helper.redirect).exit();
    // The receiver is a context of this network.
    a.label(`peer${f.family}`);
    a.ldMapFd(R1, mapFd).mov64Reg(R2, R7).call(Helper.map_lookup_elem);
    a.jmpImm("eq", R0, 0, "next");
    a.ldx("w", R1, R0, 0).mov64Imm(R2, 0).call(Helper.redirect_peer).exit();
  }
  a.label("next").ret(TCX_NEXT);
  return { name: PROGRAM_NAME, progType: ProgType.SCHED_CLS, attachType: "TCX_INGRESS", insns: a.assemble() };
}

/** The inbound program of an overlay network (shortcut-routing.ts): on its VXLAN device's tcx ingress. */
function inboundProgram(mapFd: number, bridgeIfindex: number): ProgramSpec {
  const a = new Asm();
  etherDispatch(a);
  for (const f of FAMILIES) {
    a.label(`v${f.family}`);
    a.mov64Reg(R2, R7).alu64Imm("add", R2, f.headers).jmpReg("gt", R2, R8, "next");
    // IPv4 with options takes the stack (the offsets below assume 20 bytes).
    if (f.family === 4) a.ldx("b", R2, R7, 14).jmp32Imm("ne", R2, 0x45, "next");
    routeInbound(a, mapFd, f.family, bridgeIfindex, "next");
  }
  a.label("next").ret(TCX_NEXT);
  return { name: INBOUND_NAME, progType: ProgType.SCHED_CLS, attachType: "TCX_INGRESS", insns: a.assemble() };
}

/** IPv4 goes on (at `v4ok`) unless it has options or is an ICMP redirect; R7 = data, R8 = data_end, 34 bytes checked. */
function ipv4Payload(a: Asm): void {
  // Version 4 and a 20-byte header: the ICMP type sits at 34. Options are rare enough to take the bridge.
  a.ldx("b", R2, R7, 14).jmp32Imm("ne", R2, 0x45, "next");
  a.ldx("b", R2, R7, 14 + 9).jmp32Imm("ne", R2, IPPROTO_ICMP, "v4ok");
  a.mov64Reg(R3, R7)
    .alu64Imm("add", R3, 14 + 20 + 1)
    .jmpReg("gt", R3, R8, "next");
  a.ldx("b", R2, R7, 14 + 20).jmp32Imm("eq", R2, ICMP_REDIRECT, "next");
  a.label("v4ok");
}

/** IPv6 goes on (at `v6ok`) if it is TCP, UDP or ICMPv6 other than ND; R7 = data, R8 = data_end, 54 bytes checked. */
function ipv6Payload(a: Asm): void {
  a.ldx("b", R2, R7, 14 + 6);
  a.jmp32Imm("eq", R2, IPPROTO_TCP, "v6ok").jmp32Imm("eq", R2, IPPROTO_UDP, "v6ok");
  a.jmp32Imm("ne", R2, IPPROTO_ICMPV6, "next");
  a.mov64Reg(R3, R7)
    .alu64Imm("add", R3, 14 + 40 + 1)
    .jmpReg("gt", R3, R8, "next");
  a.ldx("b", R2, R7, 14 + 40)
    .jmp32Imm("lt", R2, ND_FIRST, "v6ok")
    .jmp32Imm("le", R2, ND_LAST, "next");
  a.label("v6ok");
}

interface Shortcut {
  progFd: number;
  mapFd: number;
  /** The shared tc block of the network's ports: the bridge's ifindex, unique in the host while the bridge lives. */
  block: number;
}

type Found = Shortcut | { unavailable: string };

/** Each network's shortcut as this Host found or made it. */
const KNOWN = hostSlot(() => new Map<string, Found>());
const known = (host: Host) => host.cache(KNOWN);

function entryValue(ifindex: number, addresses: readonly string[]): Uint8Array {
  const value = new Uint8Array(VALUE_SIZE);
  new DataView(value.buffer).setUint32(0, ifindex, true);
  const ips = addresses.map((a) => parseIp(a.split("/")[0]!, "address"));
  for (const f of FAMILIES) {
    const ip = ips.find((i) => i.family === f.family);
    if (ip) value.set(ipBytes(ip), f.value);
  }
  return value;
}

/** Our program on the device, lowest id first (two processes installing at once agree on that one). */
function findOn(
  ifindex: number,
  version: "current" | "earlier" = "current",
): (Shortcut & { id: number }) | undefined {
  for (const id of queryPrograms(ifindex, "TCX_INGRESS").sort((x, y) => x - y)) {
    const progFd = progFdById(id);
    const info = progInfo(progFd);
    const [mapId] = info.mapIds;
    const current = info.name === PROGRAM_NAME;
    const earlier = !current && info.name.startsWith(PROGRAM_STEM);
    if (!(version === "current" ? current : earlier) || mapId === undefined) {
      closeFd(progFd);
      continue;
    }
    return { id, progFd, mapFd: mapFdById(mapId), block: ifindex };
  }
  return undefined;
}

function close(s: Shortcut): void {
  closeFd(s.progFd);
  closeFd(s.mapFd);
}

function install(gateway: Gateway): Found {
  const bridgeIndex = gateway.ifindex;
  let mapFd = -1;
  let progFd = -1;
  try {
    mapFd = createHashMap({
      name: PROGRAM_NAME,
      keySize: KEY_SIZE,
      valueSize: VALUE_SIZE,
      maxEntries: MAX_ENTRIES,
    });
    progFd = loadProgram(shortcutProgram(mapFd, gateway));
    attachProgram(bridgeIndex, progFd, "TCX_INGRESS", 0);
  } catch (err) {
    closeFd(progFd);
    closeFd(mapFd);
    // The network works through its bridge without it: whatever the kernel refused (no tcx before 6.6, no
    // bpf_redirect_peer before 5.10, no BPF for this user), say so in inspect rather than fail the context.
    if (!(err instanceof KernelError)) throw err;
    return { unavailable: err.message.split("\n")[0]! };
  }
  return agree({ progFd, mapFd, block: bridgeIndex });
}

/** Ours was just attached to the bridge: two processes attaching at once agree on the lowest id, ours goes if not. */
function agree(ours: Shortcut): Shortcut {
  const first = findOn(ours.block);
  if (first === undefined || first.id === progInfo(ours.progFd).id) {
    if (first) close(first);
    return ours;
  }
  detachProgram(ours.block, ours.progFd, "TCX_INGRESS");
  close(ours);
  return first;
}

/**
 * The bridge holds an earlier version of the program: the current one takes its place with the same map, on the
 * bridge and as the filter of the ports' block, which cls_bpf swaps in one step. A kernel refusing the current
 * program fails the caller: the earlier one keeps running, and that must not go unnoticed.
 */
function upgrade(host: Host, old: Shortcut, gateway: Gateway): Shortcut {
  const progFd = loadProgram(shortcutProgram(old.mapFd, gateway));
  try {
    attachProgram(old.block, progFd, "TCX_INGRESS", 0);
  } catch (err) {
    closeFd(progFd);
    throw err;
  }
  const current = agree({ progFd, mapFd: old.mapFd, block: old.block });
  // The current program at its preference, then the earlier filter goes (version 3 and before sat at 1): a frame
  // meets one or both meanwhile, never none. No port joined: no block, nothing runs the earlier program.
  try {
    host.rtnl.blockProgramAdd(old.block, BLOCK_PREF.shortcut, current.progFd, PROGRAM_NAME, true);
  } catch (err) {
    // EINVAL, "Block of given index was not found".
    if (!(err instanceof KernelError && err.errnoName === "EINVAL")) throw err;
  }
  for (const f of host.rtnl.blockFilters(old.block))
    if (f.pref !== BLOCK_PREF.shortcut && f.name.startsWith(PROGRAM_STEM))
      host.rtnl.blockFilterDel(old.block, f.pref);
  try {
    detachProgram(old.block, old.progFd, "TCX_INGRESS");
  } catch (err) {
    // Another process upgrading at the same time took it out first.
    if (!(err instanceof KernelError && err.errnoName === "ENOENT")) throw err;
  }
  closeFd(old.progFd);
  return current;
}

/** The network's shortcut; `make` installs one on its bridge when there is none. Undefined: no bridge. */
function shortcutOf(host: Host, network: string, make: boolean): Found | undefined {
  const cache = known(host);
  const cached = cache.get(network);
  if (cached) return cached;
  const bridge = host.rtnl.linkGet(bridgeIfname(network));
  if (bridge === undefined) return undefined;
  const gateway = { ifindex: bridge.index, mac: parseMac(bridge.mac ?? "", "bridge mac") };
  const earlier = () => {
    const old = findOn(bridge.index, "earlier");
    return old && upgrade(host, old, gateway);
  };
  const found = findOn(bridge.index) ?? earlier() ?? (make ? install(gateway) : undefined);
  if (found) cache.set(network, found);
  return found;
}

/**
 * After the port is on its bridge: the context's frames may go short, and frames to it. `route` (overlay networks):
 * what the shortcut routes onward and where the inbound program hangs (shortcut-routing.ts); an empty one (an
 * --internal overlay network) takes the config entries out, so nothing of the network is routed past the host.
 */
export function addShortcut(host: Host, att: Attachment, route?: ShortcutRoute): void {
  if (!att.hostIfname || !att.mac) return;
  const s = shortcutOf(host, att.network, true);
  if (!s || "unavailable" in s) return;
  const ifindex = host.rtnl.linkIndex(att.hostIfname);
  // The ports share one tc block holding the program (kernel/tc.ts says why not tcx, not a block each), behind the
  // policy's filter. The block goes when its last port does: the filter is added whenever it is missing.
  host.rtnl.blockProgramAdd(s.block, BLOCK_PREF.shortcut, s.progFd, PROGRAM_NAME);
  mapUpdate(s.mapFd, parseMac(att.mac), entryValue(ifindex, att.addresses));
  if (route) setRoute(host, s, route);
}

/** The config entries hold exactly the route's subnets; each inbound device runs this shortcut's inbound program. */
function setRoute(host: Host, s: Shortcut, route: ShortcutRoute): void {
  const entries = configEntries(route.subnets, VALUE_SIZE);
  for (const key of Object.values(CONFIG_KEYS))
    if (!entries.some(([k]) => k.every((b, i) => b === key[i]))) mapDelete(s.mapFd, key);
  for (const [key, value] of entries) mapUpdate(s.mapFd, key, value);
  for (const ifname of route.inbound) {
    const ifindex = host.rtnl.linkIndexIfAny(ifname);
    try {
      if (ifindex !== undefined) ensureInbound(host, s, ifindex);
    } catch (err) {
      // Peers' packets then come in through the host's stack, as before; the context is not failed for it.
      if (!(err instanceof KernelError)) throw err;
    }
  }
}

/** Our inbound programs on a device's tcx ingress, with the maps they read. */
function inboundPrograms(ifindex: number): { id: number; name: string; mapIds: number[] }[] {
  const out: { id: number; name: string; mapIds: number[] }[] = [];
  for (const id of queryPrograms(ifindex, "TCX_INGRESS")) {
    const info = withProgram(id, progInfo);
    if (info?.name.startsWith(INBOUND_STEM)) out.push({ id, name: info.name, mapIds: info.mapIds });
  }
  return out;
}

function withProgram<T>(id: number, fn: (fd: number) => T): T | undefined {
  let fd: number;
  try {
    fd = progFdById(id);
  } catch (err) {
    // Detached and freed meanwhile.
    if (err instanceof KernelError && err.errnoName === "ENOENT") return undefined;
    throw err;
  }
  try {
    return fn(fd);
  } finally {
    closeFd(fd);
  }
}

function detachById(ifindex: number, id: number): void {
  withProgram(id, (fd) => tolerate(() => detachProgram(ifindex, fd, "TCX_INGRESS"), "ENOENT"));
}

function tolerate(fn: () => void, errno: string): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof KernelError && err.errnoName === errno)) throw err;
  }
}

/**
 * The device's tcx ingress runs this shortcut's inbound program once. The underlay device is shared by every
 * --direct-routing network, so the others' programs stay; what goes is an earlier version of ours, and any inbound
 * program whose map no bridge's shortcut holds any more (left by a bridge made again or a network removed while its
 * engine was down): its bridge and ports are gone, their ifindexes free to be reused by other devices.
 */
function ensureInbound(host: Host, s: Shortcut, ifindex: number): void {
  const mapId = mapInfo(s.mapFd).id;
  const found = inboundPrograms(ifindex);
  if (found.some((p) => p.name === INBOUND_NAME && p.mapIds.includes(mapId))) return;
  const live = liveShortcutMaps(host);
  for (const p of found)
    if (p.mapIds.includes(mapId) || !p.mapIds.some((m) => live.has(m))) detachById(ifindex, p.id);
  const fd = loadProgram(inboundProgram(s.mapFd, s.block));
  try {
    attachProgram(ifindex, fd, "TCX_INGRESS", 0);
  } finally {
    closeFd(fd);
  }
}

/** The maps of the shortcut programs on this host's bridges. */
function liveShortcutMaps(host: Host): Set<number> {
  const maps = new Set<number>();
  for (const link of host.rtnl.linkList()) {
    if (link.kind !== "bridge") continue;
    for (const id of queryPrograms(link.index, "TCX_INGRESS")) {
      const info = withProgram(id, progInfo);
      if (info?.name.startsWith(PROGRAM_STEM)) for (const m of info.mapIds) maps.add(m);
    }
  }
  return maps;
}

/** The network is going: its inbound program leaves the devices that outlive it (the underlay device). */
export function dropInbound(host: Host, network: string, ifnames: readonly string[]): void {
  const s = shortcutOf(host, network, false);
  if (!s || "unavailable" in s) return;
  const mapId = mapInfo(s.mapFd).id;
  for (const ifname of ifnames) {
    const ifindex = host.rtnl.linkIndexIfAny(ifname);
    if (ifindex === undefined) continue;
    for (const p of inboundPrograms(ifindex)) if (p.mapIds.includes(mapId)) detachById(ifindex, p.id);
  }
}

/**
 * Before the port goes: frames to it take the bridge again. Its filter goes with its veth. Tolerates all gone.
 * Returns the port's ifindex when it is still there.
 */
export function removeShortcut(host: Host, att: Attachment): number | undefined {
  if (!att.hostIfname || !att.mac) return undefined;
  const s = shortcutOf(host, att.network, false);
  if (s && !("unavailable" in s)) mapDelete(s.mapFd, parseMac(att.mac));
  return host.rtnl.linkIndexIfAny(att.hostIfname);
}

/** The network's bridge is going: the next one gets a shortcut of its own. */
export function forgetShortcut(host: Host, network: string): void {
  const s = known(host).get(network);
  known(host).delete(network);
  if (s && !("unavailable" in s)) close(s);
}

export interface ShortcutStatus {
  state: "on" | "off";
  reason?: string;
  /** MACs of the contexts that currently go short. */
  macs?: string[];
}

/** The MACs in the network's map; undefined when the network has no shortcut. */
export function shortcutMacs(host: Host, network: string): string[] | undefined {
  const s = shortcutOf(host, network, false);
  if (!s || "unavailable" in s) return undefined;
  // The entries with ifindex 0 are the route's config (shortcut-routing.ts), no context's.
  return mapEntries(s.mapFd, KEY_SIZE, VALUE_SIZE)
    .filter(([, v]) => new DataView(v.buffer, v.byteOffset, 4).getUint32(0, true) !== 0)
    .map(([k]) => formatMac(k, 0, KEY_SIZE))
    .sort();
}

/** gc: an entry whose context is gone (or shaped) leaves the map. */
export function dropShortcutMac(host: Host, network: string, mac: string): void {
  const s = shortcutOf(host, network, false);
  if (s && !("unavailable" in s)) mapDelete(s.mapFd, parseMac(mac));
}

/** For inspect: whether the network's contexts bypass its bridge, and which. */
export function shortcutStatus(host: Host, network: string): ShortcutStatus {
  const s = shortcutOf(host, network, false);
  if (!s)
    return {
      state: "off",
      reason:
        "no shortcut program on the bridge: no context made since the network was, or the kernel refused it",
    };
  if ("unavailable" in s) return { state: "off", reason: s.unavailable };
  return { state: "on", macs: shortcutMacs(host, network) ?? [] };
}
