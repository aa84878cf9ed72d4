/** Neighbour (ARP / NDP) entries (RTM_*NEIGH). */
import { invalid } from "../errors.ts";
import {
  AF_UNSPEC,
  familyNumber,
  familyOfAf,
  type Message,
  type MessageWriter,
  type NetlinkSocket,
  NLM_F_CREATE,
  NLM_F_EXCL,
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
