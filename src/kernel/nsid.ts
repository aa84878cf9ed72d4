/**
 * Namespace ids (RTM_NEWNSID): the number a network namespace knows another one by. A netlink socket with
 * NETLINK_LISTEN_ALL_NSID (notify.ts) hears the notifications of every namespace that has an id in its own, and of
 * no other; the kernel gives one on its own only to some peers (a veth's other end), so a listener gives the
 * namespaces it must hear an id first. An id holds no reference: the namespace still goes when its last user does.
 */
import { EEXIST, KernelError } from "./errors.ts";
import * as ffi from "./ffi.ts";
import { AF_UNSPEC, type NetlinkSocket } from "./netlink.ts";

const RTM_NEWNSID = 88;
const NETNSA_NSID = 1;
const NETNSA_FD = 3;
/** NETNSA_NSID -1: the kernel picks the lowest free id. */
const NETNSA_NSID_NOT_ASSIGNED = -1;

/** The namespace at `path` gets an id in the socket's namespace, unless it has one (EEXIST). */
export function netnsIdEnsure(sock: NetlinkSocket, path: string): void {
  const op = `netns set ${path} auto`;
  const fd = ffi.open(path, ffi.O_RDONLY | ffi.O_CLOEXEC);
  if (fd < 0) throw new KernelError(op, ffi.errno());
  try {
    sock.ack(op, RTM_NEWNSID, 0, (w) => {
      // struct rtgenmsg: one byte of family, padded to four.
      w.u8(AF_UNSPEC).u8(0).u16(0);
      w.attrU32(NETNSA_FD, fd);
      w.attrU32(NETNSA_NSID, NETNSA_NSID_NOT_ASSIGNED);
    });
  } catch (err) {
    if (!(err instanceof KernelError && err.errno === EEXIST)) throw err;
  } finally {
    ffi.close(fd);
  }
}
