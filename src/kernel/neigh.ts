/**
 * Neighbour entries (RTM_*NEIGH): ARP / NDP entries of IP families, and forwarding database entries of a device
 * (AF_BRIDGE with NTF_SELF: a VXLAN device's MAC -> remote underlay address, `bridge fdb ... self`).
 */
import { invalid } from "../errors.ts";
import {
  AF_BRIDGE,
  AF_UNSPEC,
  familyNumber,
  familyOfAf,
  type Message,
  type MessageWriter,
  type NetlinkSocket,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  parseAttrs,
  parseIp,
  parseMac,
} from "./netlink.ts";

const RTM_NEWNEIGH = 28;
const RTM_DELNEIGH = 29;
const RTM_GETNEIGH = 30;
const NDMSG_LEN = 12;
const NDA_DST = 1;
const NDA_LLADDR = 2;
const NDA_MAX = 2;
const NTF_SELF = 0x02;
// linux/netlink.h: for RTM_NEWNEIGH on a VXLAN device, another remote for a MAC that has one (flood lists).
const NLM_F_APPEND = 0x800;
const NUD = { reachable: 0x02, noarp: 0x40, permanent: 0x80 } as const;
const NUD_NAMES: [number, string][] = [
  [0x01, "incomplete"],
  [0x02, "reachable"],
  [0x04, "stale"],
  [0x08, "delay"],
  [0x10, "probe"],
  [0x20, "failed"],
  [0x40, "noarp"],
  [0x80, "permanent"],
];

export interface NeighSpec {
  ifname: string;
  ip: string;
  mac?: string;
  state?: "permanent" | "reachable" | "noarp";
}

export interface Neigh {
  ifname: string;
  ip: string;
  mac?: string;
  state: string;
}

function stateName(state: number): string {
  if (state === 0) return "none";
  return NUD_NAMES.filter(([bit]) => state & bit)
    .map(([, n]) => n)
    .join(",");
}

function neighRequest(ifindex: number, n: NeighSpec, withState: boolean): (w: MessageWriter) => void {
  const ip = parseIp(n.ip, "ip");
  const mac = n.mac === undefined ? undefined : parseMac(n.mac);
  const state = NUD[n.state ?? "permanent"];
  if (state === undefined) throw invalid("state", `"${n.state}" is not a neighbour state`);
  return (w: MessageWriter): void => {
    w.u8(familyNumber(ip.family))
      .u8(0)
      .u16(0)
      .i32(ifindex)
      .u16(withState ? state : 0)
      .u8(0)
      .u8(0);
    w.attrBytes(NDA_DST, ip.bytes);
    if (mac) w.attrBytes(NDA_LLADDR, mac);
  };
}

/** Adds the entry or changes the one there (`ip neigh replace`). */
export function neighReplace(sock: NetlinkSocket, ifindex: number, n: NeighSpec): void {
  sock.ack(
    `neigh replace ${n.ip} dev ${n.ifname}`,
    RTM_NEWNEIGH,
    NLM_F_CREATE | NLM_F_REPLACE,
    neighRequest(ifindex, n, true),
  );
}

export function neighAdd(sock: NetlinkSocket, ifindex: number, n: NeighSpec): void {
  sock.ack(
    `neigh add ${n.ip} dev ${n.ifname}`,
    RTM_NEWNEIGH,
    NLM_F_CREATE | NLM_F_EXCL,
    neighRequest(ifindex, n, true),
  );
}

export function neighDel(sock: NetlinkSocket, ifindex: number, n: NeighSpec): void {
  sock.ack(`neigh del ${n.ip} dev ${n.ifname}`, RTM_DELNEIGH, 0, neighRequest(ifindex, n, false));
}

export function neighList(sock: NetlinkSocket, names: Map<number, string>, ifindex?: number): Neigh[] {
  return sock.dump(
    "neigh list",
    RTM_GETNEIGH,
    (w) => {
      w.u8(AF_UNSPEC).u8(0).u16(0).i32(0).u16(0).u8(0).u8(0);
    },
    (m: Message): Neigh | undefined => {
      if (m.type !== RTM_NEWNEIGH) return undefined;
      const { buf, offset } = m;
      // An AF_UNSPEC dump also returns the bridge FDB (AF_BRIDGE): only IP neighbours here.
      if (!familyOfAf(buf[offset] ?? 0)) return undefined;
      const index = buf.readInt32LE(offset + 4);
      if (ifindex !== undefined && index !== ifindex) return undefined;
      const a = parseAttrs(buf, offset + NDMSG_LEN, m.end, NDA_MAX);
      const ip = a.ip(NDA_DST);
      if (ip === undefined) return undefined;
      const neigh: Neigh = {
        ifname: names.get(index) ?? "",
        ip,
        state: stateName(buf.readUInt16LE(offset + 8)),
      };
      const mac = a.mac(NDA_LLADDR);
      if (mac !== undefined) neigh.mac = mac;
      return neigh;
    },
  );
}

/** A forwarding database entry of a device itself (NTF_SELF): for a VXLAN device, where frames to `mac` go. */
export interface FdbSpec {
  ifname: string;
  mac: string;
  /** The remote's underlay address (NDA_DST); in a delete, only that remote of the MAC goes. */
  dst?: string;
}

export interface FdbEntry {
  ifname: string;
  mac: string;
  dst?: string;
  state: string;
  /** NTF_SELF: the device's own table, not its bridge master's. */
  self: boolean;
}

/**
 * `bridge fdb append|replace|del MAC dev IFNAME dst DST self permanent`. On a VXLAN device `append` gives a MAC
 * one more remote (the kernel then sends each frame to every one of them: a flood list); `replace` makes `dst` its
 * only remote, which is what a unicast VTEP MAC wants.
 */
export function fdbChange(
  sock: NetlinkSocket,
  ifindex: number,
  verb: "append" | "replace" | "del",
  f: FdbSpec,
): void {
  const mac = parseMac(f.mac);
  const dst = f.dst === undefined ? undefined : parseIp(f.dst, "dst");
  const flags =
    verb === "append" ? NLM_F_CREATE | NLM_F_APPEND : verb === "replace" ? NLM_F_CREATE | NLM_F_REPLACE : 0;
  const op = `fdb ${verb} ${f.mac} dev ${f.ifname}${f.dst === undefined ? "" : ` dst ${f.dst}`}`;
  sock.ack(op, verb === "del" ? RTM_DELNEIGH : RTM_NEWNEIGH, flags, (w) => {
    w.u8(AF_BRIDGE).u8(0).u16(0).i32(ifindex).u16(NUD.permanent).u8(NTF_SELF).u8(0);
    w.attrBytes(NDA_LLADDR, mac);
    if (dst) w.attrBytes(NDA_DST, dst.bytes);
  });
}

/**
 * The forwarding database of one device (`bridge fdb show dev IFNAME`): a dump the kernel filters by the device
 * (ndm_ifindex under strict checking), so another device's thousands of entries are never read.
 */
export function fdbList(sock: NetlinkSocket, ifindex: number, ifname: string): FdbEntry[] {
  return sock.filteredDump(
    `fdb show dev ${ifname}`,
    RTM_GETNEIGH,
    (w) => {
      w.u8(AF_BRIDGE).u8(0).u16(0).i32(ifindex).u16(0).u8(0).u8(0);
    },
    (m: Message): FdbEntry | undefined => {
      if (m.type !== RTM_NEWNEIGH) return undefined;
      const { buf, offset } = m;
      if (buf[offset] !== AF_BRIDGE || buf.readInt32LE(offset + 4) !== ifindex) return undefined;
      const a = parseAttrs(buf, offset + NDMSG_LEN, m.end, NDA_MAX);
      const mac = a.mac(NDA_LLADDR);
      if (mac === undefined) return undefined;
      const flags = buf[offset + 10] ?? 0;
      const entry: FdbEntry = {
        ifname,
        mac,
        state: stateName(buf.readUInt16LE(offset + 8)),
        self: (flags & NTF_SELF) !== 0,
      };
      const dst = a.ip(NDA_DST);
      if (dst !== undefined) entry.dst = dst;
      return entry;
    },
  );
}

/**
 * The IP address a neighbour notification (RTM_NEWNEIGH / RTM_DELNEIGH, notify.ts) is about; undefined for any other
 * message and for a bridge's forwarding entries (AF_BRIDGE), which a bridge learns and forgets with every frame.
 */
export function neighNoticeIp(m: Message): string | undefined {
  if (m.type !== RTM_NEWNEIGH && m.type !== RTM_DELNEIGH) return undefined;
  if (!familyOfAf(m.buf[m.offset] ?? 0)) return undefined;
  return parseAttrs(m.buf, m.offset + NDMSG_LEN, m.end, NDA_MAX).ip(NDA_DST);
}

/** Whether a notification is a neighbour's (an ARP/NDP entry or a forwarding entry). */
export function isNeighNotice(m: Message): boolean {
  return m.type === RTM_NEWNEIGH || m.type === RTM_DELNEIGH;
}
