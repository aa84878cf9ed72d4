/**
 * What the kernel announces when its objects change, read without blocking, so a resident engine can keep a reading
 * of the kernel and know when it has gone stale (engine/drift-watch.ts):
 *  - rtnetlink groups (links, addresses, routes, rules, neighbours), with NETLINK_LISTEN_ALL_NSID: one socket hears
 *    its own namespace and every namespace that has an id in it (nsid.ts), and holds no reference on them (a socket
 *    opened inside a context's namespace would keep it, and its veth, alive after `ip netns del`);
 *  - nftables (NFNLGRP_NFTABLES): every committed change of a table, set, element, chain or rule;
 *  - the mount table (poll on /proc/self/mountinfo sets POLLPRI when it changed): `ip netns add/del` bind-mount and
 *    unmount under /run/netns;
 *  - a directory's entries (inotify): cgroups made, removed, or their attributes (xattrs) changed.
 * A notification lost to a full receive buffer (ENOBUFS) counts as a change: the reader cannot tell what it missed.
 */
import { EINTR, ENOBUFS, KernelError } from "./errors.ts";
import * as ffi from "./ffi.ts";
import type { Message } from "./netlink.ts";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const NETLINK_ROUTE = 0;
const NETLINK_NETFILTER = 12;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
const SOL_NETLINK = 270;
const NETLINK_ADD_MEMBERSHIP = 1;
const NETLINK_LISTEN_ALL_NSID = 8;
const EAGAIN = 11;
const NLMSG_HDRLEN = 16;

/** rtnetlink multicast groups (linux/rtnetlink.h, enum rtnetlink_groups). */
export const RTNLGRP = {
  link: 1,
  neigh: 3,
  ipv4Ifaddr: 5,
  ipv4Route: 7,
  ipv4Rule: 8,
  ipv6Ifaddr: 9,
  ipv6Route: 11,
  ipv6Rule: 19,
} as const;
const NFNLGRP_NFTABLES = 7;

const RECEIVE_BUFFER = 4 << 20;

/** A netlink socket subscribed to notifications; nothing is ever sent on it. */
export class NotificationSocket {
  private fd: number;
  private readonly rbuf = Buffer.alloc(64 * 1024);

  private constructor(protocol: number, groups: readonly number[], allNamespaces: boolean) {
    const op = "netlink notification socket";
    this.fd = ffi.socket(AF_NETLINK, SOCK_RAW | ffi.SOCK_NONBLOCK | ffi.SOCK_CLOEXEC, protocol);
    if (this.fd < 0) throw new KernelError(op, ffi.errno());
    try {
      const size = Buffer.alloc(4);
      size.writeInt32LE(RECEIVE_BUFFER);
      // Beyond net.core.rmem_max needs CAP_NET_ADMIN (FORCE); the plain option is capped, which only means an
      // overflow (a reading counted stale) comes sooner.
      if (ffi.setsockopt(this.fd, SOL_SOCKET, SO_RCVBUFFORCE, size, 4) < 0)
        ffi.setsockopt(this.fd, SOL_SOCKET, SO_RCVBUF, size, 4);
      const sa = Buffer.alloc(12);
      sa.writeUInt16LE(AF_NETLINK, 0);
      if (ffi.bind(this.fd, sa, sa.length) < 0) throw new KernelError(`${op}: bind`, ffi.errno());
      if (allNamespaces) this.setOption(NETLINK_LISTEN_ALL_NSID, 1, op);
      for (const group of groups) this.setOption(NETLINK_ADD_MEMBERSHIP, group, `${op}: group ${group}`);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** rtnetlink notifications of this namespace and, with `allNamespaces`, of every one with an id in it. */
  static rtnl(groups: readonly number[], allNamespaces: boolean): NotificationSocket {
    return new NotificationSocket(NETLINK_ROUTE, groups, allNamespaces);
  }

  /** Every nftables change committed in this namespace. */
  static nftables(): NotificationSocket {
    return new NotificationSocket(NETLINK_NETFILTER, [NFNLGRP_NFTABLES], false);
  }

  get descriptor(): number {
    return this.fd;
  }

  private setOption(option: number, value: number, op: string): void {
    const v = Buffer.alloc(4);
    v.writeInt32LE(value);
    if (ffi.setsockopt(this.fd, SOL_NETLINK, option, v, 4) < 0) throw new KernelError(op, ffi.errno());
  }

  /**
   * Reads every waiting notification; true when one of them is `relevant` (all are, without it), when one did not
   * fit the buffer, or when some were lost.
   */
  drain(relevant?: (m: Message) => boolean): boolean {
    let changed = false;
    for (;;) {
      const n = ffi.recv(this.fd, this.rbuf, this.rbuf.length, ffi.MSG_DONTWAIT | ffi.MSG_TRUNC);
      if (n < 0) {
        const e = ffi.errno();
        if (e === EAGAIN) return changed;
        if (e === EINTR) continue;
        if (e === ENOBUFS) {
          changed = true;
          continue;
        }
        throw new KernelError("netlink notifications", e);
      }
      if (changed || !relevant || n > this.rbuf.length) {
        changed = true;
        continue;
      }
      changed = someMessage(this.rbuf, n, relevant);
    }
  }

  close(): void {
    if (this.fd >= 0) ffi.close(this.fd);
    this.fd = -1;
  }
}

function someMessage(buf: Buffer, n: number, relevant: (m: Message) => boolean): boolean {
  let o = 0;
  while (o + NLMSG_HDRLEN <= n) {
    const len = buf.readUInt32LE(o);
    if (len < NLMSG_HDRLEN || o + len > n) return true;
    const m = {
      type: buf.readUInt16LE(o + 4),
      flags: buf.readUInt16LE(o + 6),
      buf,
      offset: o + NLMSG_HDRLEN,
      end: o + len,
    };
    if (relevant(m)) return true;
    o += (len + 3) & ~3;
  }
  return false;
}

const POLLPRI = 0x2;
const POLLERR = 0x8;

/** The mount table of this process's mount namespace: changed() says whether it did since the last call. */
export class MountTableWatch {
  private fd: number;
  private readonly pollfd = Buffer.alloc(8);

  constructor() {
    this.fd = ffi.open("/proc/self/mountinfo", ffi.O_RDONLY | ffi.O_CLOEXEC);
    if (this.fd < 0) throw new KernelError("open /proc/self/mountinfo", ffi.errno());
  }

  /** The kernel clears the mark as it reports it (mounts_poll): each change is seen by one call. */
  changed(): boolean {
    return (pollOnce(this.pollfd, this.fd, POLLPRI) & (POLLPRI | POLLERR)) !== 0;
  }

  close(): void {
    if (this.fd >= 0) ffi.close(this.fd);
    this.fd = -1;
  }
}

const IN_NONBLOCK = 0o4000;
const IN_CLOEXEC = 0o2000000;
const IN_ATTRIB = 0x4;
const IN_MOVED_FROM = 0x40;
const IN_MOVED_TO = 0x80;
const IN_CREATE = 0x100;
const IN_DELETE = 0x200;
const IN_DELETE_SELF = 0x400;
const IN_MOVE_SELF = 0x800;
const IN_IGNORED = 0x8000;
const WATCHED =
  IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF;

/**
 * The entries of one directory: made, removed, renamed, their attributes changed, or the directory itself gone.
 * A directory that does not exist yet is looked for at each call.
 */
export class DirectoryWatch {
  private fd: number;
  private watching = false;
  private readonly rbuf = Buffer.alloc(16 * 1024);

  constructor(readonly path: string) {
    this.fd = ffi.inotifyInit1(IN_NONBLOCK | IN_CLOEXEC);
    if (this.fd < 0) throw new KernelError("inotify_init1", ffi.errno());
    this.watching = ffi.inotifyAddWatch(this.fd, path, WATCHED) >= 0;
  }

  /** Whether anything changed since the last call (or the directory appeared, or went). */
  changed(): boolean {
    if (!this.watching) {
      this.watching = ffi.inotifyAddWatch(this.fd, this.path, WATCHED) >= 0;
      return this.watching;
    }
    let changed = false;
    for (;;) {
      const n = ffi.read(this.fd, this.rbuf, this.rbuf.length);
      if (n <= 0) return changed;
      changed = true;
      // The directory went: its watch is gone with it (IN_IGNORED); the next call looks for it again.
      for (let o = 0; o + 16 <= n; o += 16 + this.rbuf.readUInt32LE(o + 12))
        if (this.rbuf.readUInt32LE(o + 4) & IN_IGNORED) this.watching = false;
    }
  }

  close(): void {
    if (this.fd >= 0) ffi.close(this.fd);
    this.fd = -1;
  }
}

/** poll(2) of one descriptor, not waiting: its revents. */
function pollOnce(pollfd: Buffer, fd: number, events: number): number {
  pollfd.writeInt32LE(fd, 0);
  pollfd.writeInt16LE(events, 4);
  pollfd.writeInt16LE(0, 6);
  for (;;) {
    const r = ffi.poll(pollfd, 1, 0);
    if (r >= 0) return r === 0 ? 0 : pollfd.readInt16LE(6);
    const e = ffi.errno();
    if (e !== EINTR) throw new KernelError("poll", e);
  }
}
