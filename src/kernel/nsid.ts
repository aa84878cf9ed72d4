/**
 * Namespace ids (RTM_GETNSID, RTM_NEWNSID): the number one network namespace knows another by. Netlink requests
 * name other namespaces by it (IFLA_TARGET_NETNSID, IFLA_LINK_NETNSID), and a socket with NETLINK_LISTEN_ALL_NSID
 * (notify.ts) hears the notifications of every namespace that has an id in its own, and of no other. The kernel
 * hands one out on its own only to some peers (a veth's other end, listed), so a listener gives the namespaces it
 * must hear an id first. An id holds no reference: the namespace still goes when its last user does.
 */
import { EEXIST, KernelError } from "./errors.ts";
import * as ffi from "./ffi.ts";
import { AF_UNSPEC, type MessageWriter, type NetlinkSocket, parseAttrs } from "./netlink.ts";

const RTM_NEWNSID = 88;
const RTM_GETNSID = 90;
/** struct rtgenmsg: one byte of family, padded to 4 (NLMSG_ALIGN). */
const RTGENMSG_LEN = 4;
const NETNSA_NSID = 1;
const NETNSA_FD = 3;
const NETNSA_MAX = 5;
/** NETNSA_NSID_NOT_ASSIGNED: "none" in an answer, "pick the lowest free one" in a request. */
const NOT_ASSIGNED = -1;

/** Runs fn with an fd of the namespace at path, which a request names it by (NETNSA_FD). */
function withNetnsFd<T>(path: string, op: string, fn: (fd: number) => T): T {
  const fd = ffi.open(path, ffi.O_RDONLY | ffi.O_CLOEXEC, 0);
  if (fd < 0) throw new KernelError(op, ffi.errno());
  try {
    return fn(fd);
  } finally {
    ffi.close(fd);
  }
}

function nsidRequest(w: MessageWriter, fd: number): void {
  w.u8(AF_UNSPEC).u8(0).u16(0);
  w.attrU32(NETNSA_FD, fd);
}

/**
 * The id the socket's namespace holds for the namespace at netnsPath (`ip netns list-id`), or undefined when it
 * holds none. Asking never assigns one.
 */
export function nsidOf(sock: NetlinkSocket, netnsPath: string): number | undefined {
  const op = `netns id of ${netnsPath}`;
  let nsid: number | undefined;
  withNetnsFd(netnsPath, op, (fd) =>
    sock.ack(
      op,
      RTM_GETNSID,
      0,
      (w) => nsidRequest(w, fd),
      (m) => {
        if (m.type !== RTM_NEWNSID) return;
        const id = parseAttrs(m.buf, m.offset + RTGENMSG_LEN, m.end, NETNSA_MAX).u32(NETNSA_NSID);
        // A signed 32-bit value on the wire: -1 says "none".
        if (id !== undefined && (id | 0) !== NOT_ASSIGNED) nsid = id | 0;
      },
    ),
  );
  return nsid;
}

/** The namespace at `path` gets an id in the socket's namespace, unless it has one (EEXIST). */
export function netnsIdEnsure(sock: NetlinkSocket, path: string): void {
  const op = `netns set ${path} auto`;
  try {
    withNetnsFd(path, op, (fd) =>
      sock.ack(op, RTM_NEWNSID, 0, (w) => {
        nsidRequest(w, fd);
        w.attrU32(NETNSA_NSID, NOT_ASSIGNED);
      }),
    );
  } catch (err) {
    if (!(err instanceof KernelError && err.errno === EEXIST)) throw err;
  }
}
