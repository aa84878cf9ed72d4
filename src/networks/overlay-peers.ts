/**
 * The kernel data path of an overlay network (issue 18), flannel's vxlan backend: given the peers a host should
 * reach (fed by the cluster side from etcd watches), make the kernel hold exactly what they need, and nothing that
 * grows with remote contexts.
 *
 *  - One VXLAN device per overlay network per host, `nv-NETWORK` (`ip link add nv-NET type vxlan id VNI local
 *    UNDERLAY dstport 4789 nolearning dev UNDERLAYDEV`), MTU the underlay's less the encapsulation (50 bytes over
 *    IPv4, 70 over IPv6). Its VTEP addresses are the network addresses of the host's blocks, as /32 and /128
 *    (flannel's 10.x.y.0/32): they are what peers route a block through.
 *  - Per peer block: `BLOCK via BLOCK-NETWORK-ADDRESS dev nv-NET onlink`, a permanent neighbour entry for that
 *    gateway with the peer's VTEP MAC, and per peer one FDB entry `MAC dst PEER-UNDERLAY self permanent`. So the
 *    kernel never asks (no ARP, no NDP, no flooding: the device has no default FDB entry, learning is off).
 *    Each block is routed through its own network address rather than one per peer, so nothing depends on the order
 *    in which a node lists its blocks; with one block per family (the normal case) that is one neighbour per family.
 *  - `direct` peers (on the host's own L2 underlay segment, flannel's DirectRouting): `BLOCK via PEER-UNDERLAY dev
 *    UNDERLAYDEV`, no encapsulation, for blocks of the underlay's family; the other family still goes through VXLAN
 *    (the kernel routes IPv4 over an IPv6 next hop, not the reverse, and a peer has one underlay address).
 *
 * syncPeers is a diff: the first call for a device (or one with `observe`) reads the device's routes, neighbours
 * and FDB entries from the kernel; later calls diff against what this Host last made, so a peer joining or leaving
 * costs its own few requests whatever the number of other peers. Every route it makes carries OVERLAY_ROUTE_PROTOCOL,
 * so the direct routes it finds on a shared underlay device are told from the administrator's.
 */
import type { OverlayLocal, OverlayPeer } from "../cluster/peers.ts";
import { conflict, invalid, NetctxError } from "../errors.ts";
import type { DirectPath } from "../firewall/overlay-direct.ts";
import type { Host } from "../host.ts";
import { hostSlot } from "../host.ts";
import { KernelError } from "../kernel/errors.ts";
import { RT_TABLE_MAIN } from "../kernel/route.ts";
import { derivedIfname, LINK_GROUP } from "../model/names.ts";
import { parseStoreMark } from "../model/store-mark.ts";
import { type Cidr, cidrsOverlap, formatIp, isValidMac, parseIp, parseSubnet } from "../net/cidr.ts";
import { deleteOwnLink, setLinkLocal, tolerateMissing } from "./common.ts";

export interface OverlayDevice {
  ifname: string;
  mac: string;
  mtu: number;
}

/** What syncPeers did. Entries are routes, neighbour entries and FDB entries. */
export interface PeerSync {
  added: number;
  removed: number;
  /** Entries changed in place (a peer's new MAC, underlay address, or direct routing turned on or off). */
  changed: number;
  /** Requests that changed the kernel: what a peer joining or leaving costs. */
  kernelOps: number;
  /** Dumps read from the kernel (0 unless the device's state had to be observed). */
  reads: number;
  /** Peers left out, and why (a block that clashes, no VTEP MAC yet, an underlay of the other family). */
  skipped: { node: string; reason: string }[];
  /** Entries the kernel refused; the others were made. */
  failed: { entry: string; error: string }[];
}

const VXLAN_PORT = 4789;
/** Bytes VXLAN adds: outer Ethernet 14 + VXLAN 8 + UDP 8 + IP 20 (IPv4) or 40 (IPv6). */
const OVERHEAD = { 4: 50, 6: 70 } as const;
/**
 * rtm_protocol of every route this module makes ("n"): not one of linux/rtnetlink.h's RTPROT_* nor iproute2's
 * rt_protos, so `ip route show proto 110` lists ours and a listing of the underlay device tells them apart.
 */
export const OVERLAY_ROUTE_PROTOCOL = 110;

export function overlayIfname(network: string): string {
  return derivedIfname("network", network, `nv-${network}`, "the VXLAN");
}

export type { OverlayLocal, OverlayPeer } from "../cluster/peers.ts";

const familyOfText = (address: string): 4 | 6 => (address.includes(":") ? 6 : 4);

/**
 * The VXLAN device of `local.network`, made or brought in line (settings, MTU, VTEP addresses), up. A device of
 * that name with other settings is made anew when it is ours; another store's or nobody's is a conflict. A kernel
 * without VXLAN is an `unsupported` error naming the network.
 */
export function ensureOverlayDevice(host: Host, local: OverlayLocal): OverlayDevice {
  const ifname = overlayIfname(local.network);
  const { rtnl } = host;
  const underlay = parseIp(local.underlay, "underlay");
  const port = local.port ?? VXLAN_PORT;
  const lower = rtnl.linkGet(local.underlayDev);
  if (!lower) throw invalid("underlayDev", `there is no device "${local.underlayDev}" to carry the overlay`);
  const mtu = local.mtu ?? lower.mtu - OVERHEAD[underlay.family];
  const vteps = vtepAddresses(local.blocks);
  let link = rtnl.linkGet(ifname);
  if (link) {
    const vx = link.vxlan;
    const same =
      link.kind === "vxlan" &&
      vx?.vni === local.vni &&
      vx.port === port &&
      vx.local === underlay.text &&
      vx.dev === lower.index &&
      !vx.learning &&
      (local.mac === undefined || link.mac?.toLowerCase() === local.mac.toLowerCase());
    if (!same) {
      const mark = parseStoreMark(link.alias);
      if (link.group !== LINK_GROUP || (mark && mark.id !== host.store.id))
        throw conflict("network", `device ${ifname} exists and is not this store's overlay device`);
      deleteOwnLink(host, ifname);
      forget(host, ifname);
      link = undefined;
    }
  }
  if (!link) {
    try {
      rtnl.linkAdd({
        name: ifname,
        kind: "vxlan",
        mtu,
        ...host.linkMark,
        ...(local.mac !== undefined ? { mac: local.mac } : {}),
        vxlan: { vni: local.vni, local: underlay.text, dev: local.underlayDev, port, learning: false },
      });
    } catch (err) {
      if (err instanceof NetctxError && err.code === "unsupported")
        throw new NetctxError(
          "unsupported",
          `overlay network ${local.network} needs VXLAN, which this kernel lacks (the vxlan module): ${err.message}`,
        );
      throw err;
    }
    // No link-local address: nothing on the overlay speaks NDP or MLD (every neighbour is permanent), and its
    // multicast would find no FDB entry to go to.
    setLinkLocal(rtnl, ifname, false);
    link = rtnl.linkGet(ifname);
    if (!link) throw new NetctxError("internal", `${ifname} vanished after it was made`);
  }
  if (link.mtu !== mtu) rtnl.linkSet(ifname, { mtu });
  const held = new Set(
    rtnl
      .addrList(ifname)
      .filter((a) => a.scope === "global")
      .map((a) => a.cidr),
  );
  for (const cidr of vteps) if (!held.has(cidr)) rtnl.addrAdd(ifname, cidr, { nodad: cidr.includes(":") });
  for (const cidr of held) if (!vteps.includes(cidr)) tolerateMissing(() => rtnl.addrDel(ifname, cidr));
  if (!link.up) rtnl.linkSet(ifname, { up: true });
  host.enableForwarding();
  return { ifname, mac: link.mac ?? "", mtu };
}

/** The overlay's kernel state on this host goes: its direct routes, then its device (with every entry on it). */
export function removeOverlayDevice(host: Host, local: OverlayLocal): PeerSync {
  const sync = syncPeers(host, local, []);
  deleteOwnLink(host, overlayIfname(local.network));
  forget(host, overlayIfname(local.network));
  return sync;
}

/** VTEP addresses: each block's network address, as /32 or /128. */
export function vtepAddresses(blocks: readonly string[]): string[] {
  return blocks.map((b, i) => {
    const c = parseSubnet(b, `blocks[${i}]`);
    return `${formatIp(c.family, c.network)}/${c.family === 4 ? 32 : 128}`;
  });
}

// ---------------------------------------------------------------------------------------------------------------
// entries

/**
 * One kernel entry, keyed by what identifies it to the kernel (`route DST`, `neigh IP`, `fdb MAC`); its value is
 * what the entry says (`via GATEWAY dev DEV [onlink]`, the MAC, the underlay address). Equal values: nothing to do.
 */
type Entries = Map<string, string>;

interface Known {
  ifindex: number;
  underlayDev: string;
  entries: Entries;
}

/** What each overlay device's entries are, as this Host last made them. */
const known = hostSlot(() => new Map<string, Known>());

function forget(host: Host, ifname: string): void {
  host.cache(known).delete(ifname);
}

const ORDER = { fdb: 0, neigh: 1, route: 2 } as const;
type Kind = keyof typeof ORDER;
const kindOf = (key: string): Kind => key.slice(0, key.indexOf(" ")) as Kind;

interface Wanted {
  entries: Entries;
  skipped: PeerSync["skipped"];
}

function desired(local: OverlayLocal, ifname: string, peers: readonly OverlayPeer[]): Wanted {
  const entries: Entries = new Map();
  const skipped: PeerSync["skipped"] = [];
  const localUnderlay = parseIp(local.underlay, "underlay");
  const localBlocks = local.blocks.map((b, i) => parseSubnet(b, `blocks[${i}]`));
  // Blocks come from etcd leases, which never overlap: exact duplicates are the cheap check across peers, overlap
  // is checked against this host's own blocks only (a peer must never take this host's contexts' traffic).
  const taken = new Set(localBlocks.map((b) => b.text));
  const macs = new Set<string>();
  for (const peer of [...peers].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0))) {
    const refuse = (reason: string) => skipped.push({ node: peer.node, reason });
    let underlay: ReturnType<typeof parseIp>;
    let blocks: Cidr[];
    try {
      underlay = parseIp(peer.underlay, "underlay");
      blocks = peer.blocks.map((b, i) => parseSubnet(b, `blocks[${i}]`));
    } catch (err) {
      refuse((err as Error).message);
      continue;
    }
    if (underlay.text === localUnderlay.text) continue;
    const clash = blocks.find((b) => taken.has(b.text) || localBlocks.some((l) => cidrsOverlap(l, b)));
    if (clash) {
      refuse(`block ${clash.text} is this host's or another peer's`);
      continue;
    }
    const mine: [string, string][] = [];
    let encapsulated = false;
    for (const b of blocks) {
      if (peer.direct && b.family === underlay.family && underlay.family === localUnderlay.family) {
        mine.push([`route ${b.text}`, `via ${underlay.text} dev ${local.underlayDev}`]);
        continue;
      }
      const vtep = formatIp(b.family, b.network);
      mine.push([`neigh ${vtep}`, peer.vtepMac.toLowerCase()]);
      mine.push([`route ${b.text}`, `via ${vtep} dev ${ifname} onlink`]);
      encapsulated = true;
    }
    if (encapsulated) {
      const mac = peer.vtepMac.toLowerCase();
      if (mac === "") {
        refuse("it has no VTEP MAC yet");
        continue;
      }
      if (!isValidMac(mac)) {
        refuse(`vtepMac "${peer.vtepMac}" is not a MAC address`);
        continue;
      }
      if (underlay.family !== localUnderlay.family) {
        refuse(
          `its underlay ${underlay.text} is IPv${underlay.family}, this host's IPv${localUnderlay.family}`,
        );
        continue;
      }
      if (macs.has(mac)) {
        refuse(`VTEP MAC ${mac} is another peer's`);
        continue;
      }
      macs.add(mac);
      mine.push([`fdb ${mac}`, underlay.text]);
    }
    for (const b of blocks) taken.add(b.text);
    for (const [k, v] of mine) entries.set(k, v);
  }
  return { entries, skipped };
}

/**
 * The peer blocks syncPeers routes directly (through the underlay device, to the peer's underlay address), each with
 * every subnet of the network of its family and the peer's underlay MAC: what the firewall lets an internal network
 * reach, and be reached from, outside its own interfaces (firewall/overlay-direct.ts). Derived from the same
 * decision as the routes, so a peer left out of the data path is left out here too.
 */
export function directPaths(local: OverlayLocal, peers: readonly OverlayPeer[]): DirectPath[] {
  const macs = new Map(peers.map((p) => [parseIp(p.underlay, "underlay").text, p.underlayMac]));
  const subnets = (local.subnets ?? []).map((s, i) => parseSubnet(s, `subnets[${i}]`));
  const paths: DirectPath[] = [];
  for (const [key, value] of desired(local, overlayIfname(local.network), peers).entries) {
    const [, underlay, , dev] = value.split(" ");
    if (kindOf(key) !== "route" || dev !== local.underlayDev || underlay === undefined) continue;
    const block = parseSubnet(key.slice(key.indexOf(" ") + 1), "route");
    const mac = macs.get(underlay);
    for (const s of subnets)
      if (s.family === block.family && cidrsOverlap(s, block))
        paths.push({ subnet: s.text, block: block.text, underlay, ...(mac ? { underlayMac: mac } : {}) });
  }
  return paths;
}

/** The device's entries as the kernel holds them: ours on it, and our direct routes on the underlay device. */
function observe(host: Host, local: OverlayLocal, ifname: string, want: Entries): Entries {
  const { rtnl } = host;
  const entries: Entries = new Map();
  for (const f of rtnl.fdbList(ifname))
    if (f.self && f.state === "permanent" && f.dst !== undefined) entries.set(`fdb ${f.mac}`, f.dst);
  for (const n of rtnl.neighList(ifname))
    if (n.state === "permanent" && n.mac !== undefined) entries.set(`neigh ${n.ip}`, n.mac);
  for (const r of rtnl.routeList({ dev: ifname, table: RT_TABLE_MAIN }))
    if (r.protocol === OVERLAY_ROUTE_PROTOCOL && r.gateway !== undefined)
      entries.set(`route ${r.dst}`, `via ${r.gateway} dev ${ifname}${r.onlink ? " onlink" : ""}`);
  const subnets = (local.subnets ?? []).map((s, i) => parseSubnet(s, `subnets[${i}]`));
  for (const r of rtnl.routeList({ dev: local.underlayDev, table: RT_TABLE_MAIN })) {
    if (r.protocol !== OVERLAY_ROUTE_PROTOCOL || r.gateway === undefined) continue;
    const key = `route ${r.dst}`;
    const dst = parseSubnet(r.dst, "route");
    if (!want.has(key) && !subnets.some((s) => cidrsOverlap(s, dst))) continue;
    entries.set(key, `via ${r.gateway} dev ${local.underlayDev}`);
  }
  return entries;
}

/**
 * Make the kernel route to exactly `peers` over the overlay network's device (ensureOverlayDevice first). Only what
 * differs from the last sync (or from the kernel, when observed) is touched; see the header.
 */
export function syncPeers(
  host: Host,
  local: OverlayLocal,
  peers: readonly OverlayPeer[],
  opts: { observe?: boolean } = {},
): PeerSync {
  const ifname = overlayIfname(local.network);
  const { rtnl } = host;
  const result: PeerSync = {
    added: 0,
    removed: 0,
    changed: 0,
    kernelOps: 0,
    reads: 0,
    skipped: [],
    failed: [],
  };
  const want = desired(local, ifname, peers);
  result.skipped = want.skipped;
  const ifindex = rtnl.linkIndexIfAny(ifname);
  const cache = host.cache(known);
  let state = cache.get(ifname);
  if (opts.observe || !state || state.ifindex !== ifindex || state.underlayDev !== local.underlayDev) {
    if (ifindex === undefined && want.entries.size > 0)
      throw invalid("network", `overlay device ${ifname} does not exist: ensureOverlayDevice first`);
    // Without the device its entries went with it; direct routes on the underlay device may still be there.
    const entries = observe(host, local, ifname, want.entries);
    result.reads += 4;
    state = { ifindex: ifindex ?? -1, underlayDev: local.underlayDev, entries };
    cache.set(ifname, state);
  }
  const have = state.entries;
  const gone = [...have.keys()].filter((k) => !want.entries.has(k));
  // Routes go before the neighbour entries they resolve through, those before the FDB entries they lead to; adds the
  // other way round, so a route never points where the kernel would have to ask.
  gone.sort((a, b) => ORDER[kindOf(b)] - ORDER[kindOf(a)]);
  for (const key of gone) {
    if (!apply(key, () => removeEntry(host, ifname, key))) continue;
    have.delete(key);
    result.removed++;
  }
  const put = [...want.entries].filter(([k, v]) => have.get(k) !== v);
  put.sort(([a], [b]) => ORDER[kindOf(a)] - ORDER[kindOf(b)]);
  for (const [key, value] of put) {
    const old = have.get(key);
    if (!apply(key, () => putEntry(host, ifname, key, value, old))) continue;
    have.set(key, value);
    if (old === undefined) result.added++;
    else result.changed++;
  }
  return result;

  /** One entry's requests; a refusal is the entry's, the others go on. */
  function apply(key: string, op: () => number): boolean {
    try {
      result.kernelOps += op();
      return true;
    } catch (err) {
      if (!(err instanceof KernelError)) throw err;
      result.kernelOps++;
      result.failed.push({ entry: key, error: err.message });
      return false;
    }
  }
}

function putEntry(host: Host, ifname: string, key: string, value: string, old: string | undefined): number {
  const what = key.slice(key.indexOf(" ") + 1);
  switch (kindOf(key)) {
    case "fdb":
      // replace, not append: a VTEP MAC has one remote, and a peer's new underlay address moves it in one request.
      host.rtnl.fdbChange("replace", { ifname, mac: what, dst: value });
      return 1;
    case "neigh":
      host.rtnl.neighReplace({ ifname, ip: what, mac: value, state: "permanent" });
      return 1;
    case "route": {
      const [, gateway, , dev, onlink] = value.split(" ");
      let ops = 0;
      // A route that moves between devices (direct routing turned on or off): an IPv4 replace takes the old one's
      // place whatever its device; for IPv6 the old device's route goes first.
      const oldDev = old?.split(" ")[3];
      if (oldDev !== undefined && oldDev !== dev && familyOfText(what) === 6) {
        ops++;
        tolerateMissing(() =>
          host.rtnl.routeDel({ dst: what, dev: oldDev, protocol: OVERLAY_ROUTE_PROTOCOL }),
        );
      }
      host.rtnl.routeReplace({
        dst: what,
        gateway: gateway!,
        dev: dev!,
        onlink: onlink === "onlink",
        protocol: OVERLAY_ROUTE_PROTOCOL,
      });
      return ops + 1;
    }
  }
}

/**
 * Deletes name the entry by what identifies it alone (a route by destination and our protocol, an FDB entry by MAC),
 * not by what it says: a value another writer changed since this Host looked still goes.
 */
function removeEntry(host: Host, ifname: string, key: string): number {
  const what = key.slice(key.indexOf(" ") + 1);
  switch (kindOf(key)) {
    case "fdb":
      tolerateMissing(() => host.rtnl.fdbChange("del", { ifname, mac: what }));
      return 1;
    case "neigh":
      tolerateMissing(() => host.rtnl.neighDel({ ifname, ip: what }));
      return 1;
    case "route":
      tolerateMissing(() => host.rtnl.routeDel({ dst: what, protocol: OVERLAY_ROUTE_PROTOCOL }));
      return 1;
  }
}
