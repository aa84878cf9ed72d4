/**
 * Namespace ids (RTM_GETNSID): the number one network namespace knows another by. Netlink requests name other
 * namespaces by it (IFLA_TARGET_NETNSID, IFLA_LINK_NETNSID), and the kernel hands one out as soon as a link whose
 * other end lives there is listed (a veth's peer, a macvlan's parent).
 */
import { KernelError } from "./errors.ts";
import * as ffi from "./ffi.ts";
import { AF_UNSPEC, type NetlinkSocket, parseAttrs } from "./netlink.ts";

const RTM_NEWNSID = 88;
const RTM_GETNSID = 90;
/** struct rtgenmsg: one byte of family, padded to 4 (NLMSG_ALIGN). */
const RTGENMSG_LEN = 4;
const NETNSA_NSID = 1;
const NETNSA_FD = 3;
const NETNSA_MAX = 5;
/** NETNSA_NSID_NOT_ASSIGNED. */
const NOT_ASSIGNED = -1;

/**
 * The id the socket's namespace holds for the namespace at netnsPath (`ip netns identify`'s counterpart,
 * `ip netns list-id target`), or undefined when it holds none. Asking never assigns one.
 */
export function nsidOf(sock: NetlinkSocket, netnsPath: string): number | undefined {
  const op = `netns id of ${netnsPath}`;
  const fd = ffi.open(netnsPath, ffi.O_RDONLY | ffi.O_CLOEXEC, 0);
  if (fd < 0) throw new KernelError(op, ffi.errno());
  let nsid: number | undefined;
  try {
    sock.ack(
      op,
      RTM_GETNSID,
      0,
      (w) => {
        w.u8(AF_UNSPEC).u8(0).u16(0);
        w.attrU32(NETNSA_FD, fd);
      },
      (m) => {
        if (m.type !== RTM_NEWNSID) return;
        const id = parseAttrs(m.buf, m.offset + RTGENMSG_LEN, m.end, NETNSA_MAX).u32(NETNSA_NSID);
        // A signed 32-bit value on the wire: -1 says "none".
        if (id !== undefined && (id | 0) !== NOT_ASSIGNED) nsid = id | 0;
      },
    );
  } finally {
    ffi.close(fd);
  }
  return nsid;
}
