/** Links (RTM_*LINK): veth, bridge, macvlan, vxlan and any other kind the kernel knows. */
import { invalid } from "../errors.ts";
import { ifnameProblem } from "../net/ifname.ts";
import { ENODEV, EOPNOTSUPP, KernelError } from "./errors.ts";
import * as ffi from "./ffi.ts";
import {
  AF_INET6,
  AF_UNSPEC,
  type Attrs,
  type IpBytes,
  type Message,
  type MessageWriter,
  NetlinkSocket,
  NLM_F_CREATE,
  NLM_F_EXCL,
  parseAttrs,
  parseIp,
  parseMac,
} from "./netlink.ts";
import { inNetns } from "./netns.ts";

const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_GETLINK = 18;
const RTM_SETLINK = 19;
const IFF_UP = 0x1;
const IFINFOMSG_LEN = 16;

const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_LINK = 5;
const IFLA_MASTER = 10;
const IFLA_OPERSTATE = 16;
const IFLA_LINKINFO = 18;
const IFLA_IFALIAS = 20;
const IFLA_GROUP = 27;
const IFLA_NET_NS_FD = 28;
const IFLA_EXT_MASK = 29;
const IFLA_AF_SPEC = 26;
const IFLA_INET6_ADDR_GEN_MODE = 8;
const IN6_ADDR_GEN_MODE = { eui64: 0, none: 1 } as const;
const IFLA_MAX = 64;
const RTEXT_FILTER_SKIP_STATS = 1 << 3;

const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
const IFLA_MACVLAN_MODE = 1;
const MACVLAN_MODES = { private: 1, vepa: 2, bridge: 4, passthru: 8 } as const;
const IFLA_BR_STP_STATE = 5;
const IFLA_BR_VLAN_FILTERING = 7;
const IFLA_BR_MCAST_SNOOPING = 23;
const IFLA_VXLAN_ID = 1;
const IFLA_VXLAN_GROUP = 2;
const IFLA_VXLAN_LINK = 3;
const IFLA_VXLAN_LOCAL = 4;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_PORT = 15;
const IFLA_VXLAN_GROUP6 = 16;
const IFLA_VXLAN_LOCAL6 = 17;
const IFLA_VXLAN_MAX = 17;
const VXLAN_IANA_PORT = 4789;

const OPERSTATES = ["UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"];

export interface LinkAddSpec {
  name: string;
  kind: "veth" | "bridge" | "macvlan" | "vxlan" | string;
  mtu?: number;
  mac?: string;
  master?: string;
  up?: boolean;
  group?: number;
  alias?: string;
  /** Path of a netns: the link is created directly there (IFLA_NET_NS_FD). */
  netns?: string;
  peer?: { name: string; mac?: string; mtu?: number; netns?: string; up?: boolean };
  macvlan?: { parent: string; mode: "private" | "vepa" | "bridge" | "passthru" };
  vxlan?: {
    vni: number;
    local?: string;
    group?: string;
    remote?: string;
    dev?: string;
    port?: number;
    learning?: boolean;
  };
  bridge?: { stp?: boolean; vlanFiltering?: boolean; multicastSnooping?: boolean };
}

export interface LinkChange {
  up?: boolean;
  master?: string | null;
  mtu?: number;
  mac?: string;
  name?: string;
  netns?: string;
  alias?: string;
  /**
   * false: the link generates no IPv6 link-local address when it comes up (addrgenmode none), so it sends no
   * DAD, router solicitation or MLD and adds no fe80 routes. The kernel applies IFLA_AF_SPEC after the flags
   * of the same request, and refuses it in a create request (EAFNOSUPPORT): set it on a link that is still down.
   */
  ipv6LinkLocal?: boolean;
}

export interface Link {
  index: number;
  name: string;
  kind?: string;
  mtu: number;
  mac?: string;
  up: boolean;
  operstate: string;
  master?: number;
  group: number;
  alias?: string;
  /** IFLA_LINK: the veth peer's or macvlan parent's index (possibly in another netns). */
  linkIndex?: number;
  /** A VXLAN device's settings (IFLA_INFO_DATA), as `ip -d link` shows them. */
  vxlan?: VxlanInfo;
}

export interface VxlanInfo {
  vni: number;
  port: number;
  learning: boolean;
  local?: string;
  /** The multicast group or unicast remote. */
  remote?: string;
  /** The underlay device's index (IFLA_VXLAN_LINK). */
  dev?: number;
}

/** Refuses before the kernel would (EINVAL without a word): the name check of net/ifname.ts. */
export function checkIfname(name: string, field = "name"): void {
  const problem = ifnameProblem(name);
  if (problem) throw invalid(field, problem);
}

function ifinfomsg(w: MessageWriter, index: number, flags: number, change: number): void {
  w.u8(AF_UNSPEC).u8(0).u16(0).i32(index).u32(flags).u32(change);
}

export function parseLink(m: Message): Link | undefined {
  const { buf, offset } = m;
  if (m.type !== RTM_NEWLINK) return undefined;
  const a = parseAttrs(buf, offset + IFINFOMSG_LEN, m.end, IFLA_MAX);
  const link: Link = {
    index: buf.readInt32LE(offset + 4),
    name: a.str(IFLA_IFNAME) ?? "",
    mtu: a.u32(IFLA_MTU) ?? 0,
    up: (buf.readUInt32LE(offset + 8) & IFF_UP) !== 0,
    operstate: OPERSTATES[a.u8(IFLA_OPERSTATE) ?? 0] ?? "UNKNOWN",
    group: a.u32(IFLA_GROUP) ?? 0,
  };
  const info = a.nested(IFLA_LINKINFO, IFLA_INFO_DATA);
  const kind = info?.str(IFLA_INFO_KIND);
  if (kind) link.kind = kind;
  const vxlan = kind === "vxlan" ? info?.nested(IFLA_INFO_DATA, IFLA_VXLAN_MAX) : undefined;
  if (vxlan) link.vxlan = parseVxlan(vxlan);
  const mac = a.mac(IFLA_ADDRESS);
  if (mac) link.mac = mac;
  const master = a.u32(IFLA_MASTER);
  if (master) link.master = master;
  const alias = a.str(IFLA_IFALIAS);
  if (alias) link.alias = alias;
  const parent = a.u32(IFLA_LINK);
  // The kernel sends IFLA_LINK only when it differs from the link's own index.
  if (parent !== undefined) link.linkIndex = parent;
  return link;
}

function parseVxlan(a: Attrs): VxlanInfo {
  const out: VxlanInfo = {
    vni: a.u32(IFLA_VXLAN_ID) ?? 0,
    // The kernel reports the port it uses, 8472 when none was asked for.
    port: a.be16(IFLA_VXLAN_PORT) ?? 0,
    learning: (a.u8(IFLA_VXLAN_LEARNING) ?? 1) !== 0,
  };
  const local = a.ip(IFLA_VXLAN_LOCAL) ?? a.ip(IFLA_VXLAN_LOCAL6);
  if (local !== undefined) out.local = local;
  const remote = a.ip(IFLA_VXLAN_GROUP) ?? a.ip(IFLA_VXLAN_GROUP6);
  if (remote !== undefined) out.remote = remote;
  const dev = a.u32(IFLA_VXLAN_LINK);
  if (dev) out.dev = dev;
  return out;
}

function getByName(w: MessageWriter, name: string): void {
  ifinfomsg(w, 0, 0, 0);
  w.attrStr(IFLA_IFNAME, name);
  w.attrU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
}

function dumpRequest(w: MessageWriter): void {
  ifinfomsg(w, 0, 0, 0);
  w.attrU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
}

export function linkGet(sock: NetlinkSocket, name: string): Link | undefined {
  checkIfname(name);
  let link: Link | undefined;
  try {
    sock.ack(
      `link show ${name}`,
      RTM_GETLINK,
      0,
      (w) => getByName(w, name),
      (m) => {
        link = parseLink(m) ?? link;
      },
    );
  } catch (err) {
    if (err instanceof KernelError && err.errno === ENODEV) return undefined;
    throw err;
  }
  return link;
}

/** The ifindex of name in the socket's netns; KernelError ENODEV when there is none. */
export function linkIndex(sock: NetlinkSocket, name: string, op: string): number {
  checkIfname(name);
  const index = sock.ifindex(name);
  if (index < 0) throw new KernelError(op, -index);
  return index;
}

export function linkList(sock: NetlinkSocket): Link[] {
  return sock.dump("link list", RTM_GETLINK, dumpRequest, parseLink);
}

/**
 * How many ports bridge `master` has: a dump the kernel filters by IFLA_MASTER, counted without parsing (parsing
 * a link message costs ~20 us, a bridge may have hundreds of ports).
 */
export function linkPortCount(sock: NetlinkSocket, master: number): number {
  let count = 0;
  sock.filteredDump(
    `link list master ${master}`,
    RTM_GETLINK,
    (w) => {
      dumpRequest(w);
      w.attrU32(IFLA_MASTER, master);
    },
    (m) => {
      if (m.type === RTM_NEWLINK) count++;
      return undefined;
    },
  );
  return count;
}

/** ifindex -> name, for objects that carry only an index. */
export function linkNames(sock: NetlinkSocket): Map<number, string> {
  const names = new Map<number, string>();
  sock.dump("link list", RTM_GETLINK, dumpRequest, (m) => {
    if (m.type !== RTM_NEWLINK) return undefined;
    const a = parseAttrs(m.buf, m.offset + IFINFOMSG_LEN, m.end, IFLA_IFNAME);
    names.set(m.buf.readInt32LE(m.offset + 4), a.str(IFLA_IFNAME) ?? "");
    return undefined;
  });
  return names;
}

/** Opens netns paths for IFLA_NET_NS_FD; closed by the caller after the request. */
class NsFds {
  private fds: number[] = [];
  open(path: string, op: string): number {
    const fd = ffi.open(path, ffi.O_RDONLY | ffi.O_CLOEXEC);
    if (fd < 0) throw new KernelError(`${op}: open ${path}`, ffi.errno());
    this.fds.push(fd);
    return fd;
  }
  close(): void {
    for (const fd of this.fds) ffi.close(fd);
    this.fds = [];
  }
}

function checkMtu(mtu: number | undefined, field: string): void {
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535))
    throw invalid(field, `${mtu} is not a valid MTU (68-65535)`);
}

export function linkAdd(sock: NetlinkSocket, spec: LinkAddSpec): void {
  const op = `link add ${spec.name}`;
  checkIfname(spec.name);
  checkMtu(spec.mtu, "mtu");
  const mac = spec.mac === undefined ? undefined : parseMac(spec.mac);
  if (spec.kind === "veth" && !spec.peer) throw invalid("peer", "a veth needs a peer name");
  if (spec.kind === "macvlan" && !spec.macvlan) throw invalid("macvlan", "a macvlan needs a parent");
  if (spec.kind === "vxlan" && !spec.vxlan) throw invalid("vxlan", "a vxlan needs a vni");
  const peer = spec.kind === "veth" ? spec.peer : undefined;
  if (peer) {
    checkIfname(peer.name, "peer.name");
    checkMtu(peer.mtu, "peer.mtu");
  }
  const peerMac = peer?.mac === undefined ? undefined : parseMac(peer.mac, "peer.mac");
  const macvlanMode = spec.macvlan ? MACVLAN_MODES[spec.macvlan.mode] : undefined;
  if (spec.macvlan && macvlanMode === undefined)
    throw invalid("macvlan.mode", `"${spec.macvlan.mode}" is not a macvlan mode`);
  const vxlan = spec.kind === "vxlan" && spec.vxlan ? vxlanAttrs(spec.vxlan) : undefined;
  // Index lookups are requests of their own: all of them happen before this message is built.
  const master = spec.master === undefined ? undefined : linkIndex(sock, spec.master, `${op}: master`);
  const macvlanParent = spec.macvlan ? linkIndex(sock, spec.macvlan.parent, `${op}: parent`) : undefined;
  if (vxlan && spec.vxlan?.dev !== undefined) vxlan.dev = linkIndex(sock, spec.vxlan.dev, `${op}: dev`);
  const fds = new NsFds();
  try {
    const nsFd = spec.netns === undefined ? undefined : fds.open(spec.netns, op);
    const peerNsFd = peer?.netns === undefined ? undefined : fds.open(peer.netns, op);
    sock.ack(op, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, (w) => {
      // IFF_UP in ifi_flags brings the link up in the same request (rtnl_configure_link).
      ifinfomsg(w, 0, spec.up ? IFF_UP : 0, IFF_UP);
      w.attrStr(IFLA_IFNAME, spec.name);
      if (spec.mtu !== undefined) w.attrU32(IFLA_MTU, spec.mtu);
      if (mac) w.attrBytes(IFLA_ADDRESS, mac);
      if (master !== undefined) w.attrU32(IFLA_MASTER, master);
      if (spec.group !== undefined) w.attrU32(IFLA_GROUP, spec.group);
      if (nsFd !== undefined) w.attrU32(IFLA_NET_NS_FD, nsFd);
      if (macvlanParent !== undefined) w.attrU32(IFLA_LINK, macvlanParent);
      const info = w.nestStart(IFLA_LINKINFO);
      w.attrStr(IFLA_INFO_KIND, spec.kind);
      const data = w.nestStart(IFLA_INFO_DATA);
      if (peer) {
        // VETH_INFO_PEER carries a whole ifinfomsg plus the peer's own attributes.
        const at = w.nestStart(VETH_INFO_PEER);
        // Not IFF_UP here: the kernel opens the peer before the pair is linked and veth_open says ENOTCONN.
        ifinfomsg(w, 0, 0, 0);
        w.attrStr(IFLA_IFNAME, peer.name);
        // Mismatched MTUs across a veth drop packets silently: the peer follows the link unless told otherwise.
        const peerMtu = peer.mtu ?? spec.mtu;
        if (peerMtu !== undefined) w.attrU32(IFLA_MTU, peerMtu);
        if (peerMac) w.attrBytes(IFLA_ADDRESS, peerMac);
        if (peerNsFd !== undefined) w.attrU32(IFLA_NET_NS_FD, peerNsFd);
        w.nestEnd(at);
      } else if (macvlanMode !== undefined) {
        w.attrU32(IFLA_MACVLAN_MODE, macvlanMode);
      } else if (vxlan) {
        writeVxlan(w, vxlan);
      } else if (spec.kind === "bridge" && spec.bridge) {
        if (spec.bridge.stp !== undefined) w.attrU32(IFLA_BR_STP_STATE, spec.bridge.stp ? 1 : 0);
        if (spec.bridge.vlanFiltering !== undefined)
          w.attrU8(IFLA_BR_VLAN_FILTERING, spec.bridge.vlanFiltering ? 1 : 0);
        if (spec.bridge.multicastSnooping !== undefined)
          w.attrU8(IFLA_BR_MCAST_SNOOPING, spec.bridge.multicastSnooping ? 1 : 0);
      }
      w.nestEnd(data);
      w.nestEnd(info);
    });
  } catch (err) {
    throw unknownKind(err, spec);
  } finally {
    fds.close();
  }
  // Two things the create request cannot do: rtnl_create_link ignores IFLA_IFALIAS, and a veth peer opened
  // before the pair is linked fails with ENOTCONN. Both follow as a second request; failure undoes the link.
  if (spec.alias === undefined && !peer?.up) return;
  try {
    if (spec.alias !== undefined)
      onSocketIn(sock, spec.netns, (s) => linkSet(s, spec.name, { alias: spec.alias! }));
    if (peer?.up) onSocketIn(sock, peer.netns, (s) => linkSet(s, peer.name, { up: true }));
  } catch (err) {
    try {
      onSocketIn(sock, spec.netns, (s) => linkDel(s, spec.name));
    } catch {
      // the error that matters is the first one
    }
    throw err;
  }
}

/** Runs fn on sock, or on a short-lived socket inside the netns at path. */
function onSocketIn(sock: NetlinkSocket, path: string | undefined, fn: (s: NetlinkSocket) => void): void {
  if (path === undefined) {
    fn(sock);
    return;
  }
  const there = inNetns(path, () => NetlinkSocket.open());
  try {
    fn(there);
  } finally {
    there.close();
  }
}

interface VxlanAttrs {
  vni: number;
  local?: IpBytes;
  peer?: IpBytes;
  dev?: number;
  port: number;
  learning?: boolean;
}

function vxlanAttrs(vx: NonNullable<LinkAddSpec["vxlan"]>): VxlanAttrs {
  if (!Number.isInteger(vx.vni) || vx.vni < 0 || vx.vni > 0xffffff)
    throw invalid("vxlan.vni", `${vx.vni} is not a VNI`);
  const port = vx.port ?? VXLAN_IANA_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw invalid("vxlan.port", `${port} is not a port`);
  const out: VxlanAttrs = { vni: vx.vni, port };
  if (vx.local !== undefined) out.local = parseIp(vx.local, "vxlan.local");
  // The kernel has one attribute for both: a multicast group or a unicast remote (as iproute2 does).
  if (vx.group !== undefined) out.peer = parseIp(vx.group, "vxlan.group");
  else if (vx.remote !== undefined) out.peer = parseIp(vx.remote, "vxlan.remote");
  if (vx.learning !== undefined) out.learning = vx.learning;
  return out;
}

function writeVxlan(w: MessageWriter, vx: VxlanAttrs): void {
  w.attrU32(IFLA_VXLAN_ID, vx.vni);
  if (vx.local) w.attrBytes(vx.local.family === 4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, vx.local.bytes);
  if (vx.peer) w.attrBytes(vx.peer.family === 4 ? IFLA_VXLAN_GROUP : IFLA_VXLAN_GROUP6, vx.peer.bytes);
  if (vx.dev !== undefined) w.attrU32(IFLA_VXLAN_LINK, vx.dev);
  // Without a port the kernel uses 8472 (the pre-IANA Linux default); 4789 is what other VTEPs speak.
  w.attrBe16(IFLA_VXLAN_PORT, vx.port);
  if (vx.learning !== undefined) w.attrU8(IFLA_VXLAN_LEARNING, vx.learning ? 1 : 0);
}

/** EOPNOTSUPP "Unknown device type": the kind's module is not in this kernel. */
function unknownKind(err: unknown, spec: LinkAddSpec): unknown {
  if (!(err instanceof KernelError) || err.errno !== EOPNOTSUPP) return err;
  const unsupported = (message: string) =>
    new KernelError(err.op, err.errno, err.extack, { code: "unsupported", message });
  if (/unknown device type/i.test(err.extack ?? ""))
    return unsupported(
      `link kind "${spec.kind}" is not available in this kernel (EOPNOTSUPP: ${err.extack})`,
    );
  // Built without CONFIG_BRIDGE_VLAN_FILTERING, the bridge refuses the option with a bare EOPNOTSUPP.
  if (spec.kind === "bridge" && spec.bridge?.vlanFiltering && err.extack === undefined)
    return unsupported(`bridge VLAN filtering is not available in this kernel (EOPNOTSUPP) for ${spec.name}`);
  return err;
}

export function linkSet(sock: NetlinkSocket, name: string, change: LinkChange): void {
  const op = `link set ${name}`;
  checkIfname(name);
  checkMtu(change.mtu, "mtu");
  if (change.name !== undefined) checkIfname(change.name, "name");
  const mac = change.mac === undefined ? undefined : parseMac(change.mac);
  // A rename needs the index: IFLA_IFNAME then carries the new name.
  const index = change.name !== undefined && change.name !== name ? linkIndex(sock, name, op) : 0;
  const master =
    change.master === undefined
      ? undefined
      : change.master === null
        ? 0
        : linkIndex(sock, change.master, `${op}: master`);
  const fds = new NsFds();
  try {
    const nsFd = change.netns === undefined ? undefined : fds.open(change.netns, op);
    sock.ack(op, RTM_SETLINK, 0, (w) => {
      ifinfomsg(w, index, change.up ? IFF_UP : 0, change.up === undefined ? 0 : IFF_UP);
      w.attrStr(IFLA_IFNAME, index ? (change.name ?? name) : name);
      if (change.mtu !== undefined) w.attrU32(IFLA_MTU, change.mtu);
      if (mac) w.attrBytes(IFLA_ADDRESS, mac);
      if (master !== undefined) w.attrU32(IFLA_MASTER, master);
      if (change.alias !== undefined) w.attrStr(IFLA_IFALIAS, change.alias);
      if (nsFd !== undefined) w.attrU32(IFLA_NET_NS_FD, nsFd);
      if (change.ipv6LinkLocal !== undefined) {
        const spec = w.nestStart(IFLA_AF_SPEC);
        const inet6 = w.nestStart(AF_INET6);
        w.attrU8(IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE[change.ipv6LinkLocal ? "eui64" : "none"]);
        w.nestEnd(inet6);
        w.nestEnd(spec);
      }
    });
  } finally {
    fds.close();
  }
}

export function linkDel(sock: NetlinkSocket, name: string): void {
  checkIfname(name);
  sock.ack(`link del ${name}`, RTM_DELLINK, 0, (w) => {
    ifinfomsg(w, 0, 0, 0);
    w.attrStr(IFLA_IFNAME, name);
  });
}

/** Deletes every link of a group in one request (the fast teardown path). */
export function linkDelGroup(sock: NetlinkSocket, group: number): void {
  if (!Number.isInteger(group) || group <= 0)
    throw invalid("group", `${group} is not a deletable link group`);
  sock.ack(`link del group ${group}`, RTM_DELLINK, 0, (w) => {
    ifinfomsg(w, 0, 0, 0);
    w.attrU32(IFLA_GROUP, group);
  });
}
