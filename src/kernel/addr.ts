/** Interface addresses (RTM_*ADDR). */
import {
  AF_UNSPEC,
  familyNumber,
  familyOfAf,
  formatIp,
  type Message,
  type MessageWriter,
  type NetlinkSocket,
  NLM_F_CREATE,
  NLM_F_EXCL,
  parseAttrs,
  parseCidr,
} from "./netlink.ts";

const RTM_NEWADDR = 20;
const RTM_DELADDR = 21;
const RTM_GETADDR = 22;
const IFADDRMSG_LEN = 8;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_FLAGS = 8;
const IFA_MAX = 8;
const IFA_F_NODAD = 0x02;
// Above 8 bits: only IFA_FLAGS (u32) can carry it, not ifa_flags.
const IFA_F_NOPREFIXROUTE = 0x200;

export interface AddrOpts {
  nodad?: boolean;
  noprefixroute?: boolean;
}

export interface Addr {
  ifindex: number;
  ifname: string;
  family: 4 | 6;
  cidr: string;
  scope: string;
}

export function scopeName(scope: number): string {
  switch (scope) {
    case 0:
      return "global";
    case 200:
      return "site";
    case 253:
      return "link";
    case 254:
      return "host";
    case 255:
      return "nowhere";
    default:
      return String(scope);
  }
}

function writeAddr(w: MessageWriter, ifindex: number, cidr: string, flags: number): void {
  const c = parseCidr(cidr);
  w.u8(familyNumber(c.family))
    .u8(c.prefix)
    .u8(flags & 0xff)
    .u8(0)
    .u32(ifindex);
  // For IPv4, IFA_LOCAL is the address and IFA_ADDRESS the peer; on a plain interface both are the same.
  w.attrBytes(IFA_LOCAL, c.bytes);
  w.attrBytes(IFA_ADDRESS, c.bytes);
  if (flags) w.attrU32(IFA_FLAGS, flags);
}

export function addrAdd(
  sock: NetlinkSocket,
  ifindex: number,
  ifname: string,
  cidr: string,
  opts: AddrOpts = {},
): void {
  const flags = (opts.nodad ? IFA_F_NODAD : 0) | (opts.noprefixroute ? IFA_F_NOPREFIXROUTE : 0);
  sock.ack(`addr add ${cidr} dev ${ifname}`, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, (w) =>
    writeAddr(w, ifindex, cidr, flags),
  );
}

export function addrDel(sock: NetlinkSocket, ifindex: number, ifname: string, cidr: string): void {
  sock.ack(`addr del ${cidr} dev ${ifname}`, RTM_DELADDR, 0, (w) => writeAddr(w, ifindex, cidr, 0));
}

/** All addresses, or those of one ifindex; names come from the caller's index map. */
export function addrList(sock: NetlinkSocket, names: Map<number, string>, ifindex?: number): Addr[] {
  return sock.dump(
    "addr list",
    RTM_GETADDR,
    (w) => {
      w.u8(AF_UNSPEC).u8(0).u8(0).u8(0).u32(0);
    },
    (m: Message): Addr | undefined => {
      if (m.type !== RTM_NEWADDR) return undefined;
      const { buf, offset } = m;
      const family = familyOfAf(buf[offset] ?? 0);
      const index = buf.readUInt32LE(offset + 4);
      if (!family || (ifindex !== undefined && index !== ifindex)) return undefined;
      const a = parseAttrs(buf, offset + IFADDRMSG_LEN, m.end, IFA_MAX);
      const at = a.offset(IFA_LOCAL) ?? a.offset(IFA_ADDRESS);
      if (at === undefined) return undefined;
      const len = a.has(IFA_LOCAL) ? a.len(IFA_LOCAL) : a.len(IFA_ADDRESS);
      return {
        ifindex: index,
        ifname: names.get(index) ?? "",
        family,
        cidr: `${formatIp(buf, at, len)}/${buf[offset + 1]}`,
        scope: scopeName(buf[offset + 3] ?? 0),
      };
    },
  );
}
