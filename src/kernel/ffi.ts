/**
 * The few libc calls the kernel layer needs, bound once at module load through koffi.
 * Every call is synchronous and runs on the calling thread (the main thread, which is what setns windows rely on;
 * the DNS worker's UDP batches in their own).
 */
import koffi from "koffi";

const libc = koffi.load("libc.so.6");

export const socket = libc.func("int socket(int domain, int type, int protocol)") as (
  domain: number,
  type: number,
  protocol: number,
) => number;
export const bind = libc.func("int bind(int fd, const void *addr, uint32_t len)") as (
  fd: number,
  addr: Uint8Array,
  len: number,
) => number;
export const setsockopt = libc.func(
  "int setsockopt(int fd, int level, int name, const void *value, uint32_t len)",
) as (fd: number, level: number, name: number, value: Uint8Array, len: number) => number;
export const getsockopt = libc.func(
  "int getsockopt(int fd, int level, int name, void *value, _Inout_ uint32_t *len)",
) as (fd: number, level: number, name: number, value: Uint8Array, len: number[]) => number;
export const send = libc.func("long send(int fd, const void *buf, size_t len, int flags)") as (
  fd: number,
  buf: Uint8Array,
  len: number,
  flags: number,
) => number;
export const sendto = libc.func(
  "long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t alen)",
) as (
  fd: number,
  buf: Uint8Array,
  len: number,
  flags: number,
  addr: Uint8Array | null,
  alen: number,
) => number;
export const recv = libc.func("long recv(int fd, void *buf, size_t len, int flags)") as (
  fd: number,
  buf: Uint8Array,
  len: number,
  flags: number,
) => number;
export const close = libc.func("int close(int fd)") as (fd: number) => number;
// Many datagrams a call (udp-batch.ts). The vectors are passed as addresses (uintptr_t, the same register as a
// pointer): sendmmsg resumes mid-vector.
export const recvmmsgC = libc.func(
  "int recvmmsg(int fd, uintptr_t vec, unsigned int vlen, int flags, void *timeout)",
) as (fd: number, vec: bigint, vlen: number, flags: number, timeout: null) => number;
export const sendmmsgC = libc.func("int sendmmsg(int fd, uintptr_t vec, unsigned int vlen, int flags)") as (
  fd: number,
  vec: bigint,
  vlen: number,
  flags: number,
) => number;
export const inetNtop = libc.func(
  "const char *inet_ntop(int af, const void *src, char *dst, uint32_t size)",
) as (af: number, src: Uint8Array, dst: Buffer, size: number) => string | null;
export const inetPton = libc.func("int inet_pton(int af, const char *src, void *dst)") as (
  af: number,
  src: string,
  dst: Uint8Array,
) => number;
// syscall(2) is variadic; a fixed (long, int, void*, uint) signature passes the same registers on x86_64 and the
// glibc stub only shuffles registers, never va_arg (bpf(2), which glibc does not wrap: bpf/syscall.ts).
export const bpfSyscall = libc.func("long syscall(long nr, int cmd, void *attr, unsigned int size)") as (
  nr: number,
  cmd: number,
  attr: unknown,
  size: number,
) => number;
/** poll(2) over `count` packed struct pollfd (fd i32, events i16, revents i16). */
export const poll = libc.func("int poll(void *fds, unsigned long count, int timeout)") as (
  fds: Uint8Array,
  count: number,
  timeout: number,
) => number;
export const read = libc.func("long read(int fd, void *buf, size_t count)") as (
  fd: number,
  buf: Uint8Array,
  count: number,
) => number;
export const inotifyInit1 = libc.func("int inotify_init1(int flags)") as (flags: number) => number;
export const inotifyAddWatch = libc.func(
  "int inotify_add_watch(int fd, const char *path, uint32_t mask)",
) as (fd: number, path: string, mask: number) => number;
const fcntlVariadic = libc.func("int fcntl(int fd, int cmd, ...)") as (
  fd: number,
  cmd: number,
  ...rest: unknown[]
) => number;
/** fcntl(fd, F_DUPFD_CLOEXEC, min): a copy of fd at the lowest free number >= min, or -1 (errno). */
export function dupAtLeast(fd: number, min: number): number {
  return fcntlVariadic(fd, F_DUPFD_CLOEXEC, "int", min);
}
const F_DUPFD_CLOEXEC = 1030;
const openVariadic = libc.func("int open(const char *path, int flags, ...)") as (
  path: string,
  flags: number,
  ...rest: unknown[]
) => number;
export const setxattr = libc.func(
  "int setxattr(const char *path, const char *name, const void *value, size_t size, int flags)",
) as (path: string, name: string, value: Uint8Array, size: number, flags: number) => number;
export const getxattr = libc.func(
  "long getxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)",
) as (path: string, name: string, value: Uint8Array, size: number) => number;
export const setns = libc.func("int setns(int fd, int nstype)") as (fd: number, nstype: number) => number;
export const unshare = libc.func("int unshare(int flags)") as (flags: number) => number;
export const mount = libc.func(
  "int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)",
) as (source: string | null, target: string, fstype: string | null, flags: number, data: null) => number;
export const umount2 = libc.func("int umount2(const char *target, int flags)") as (
  target: string,
  flags: number,
) => number;
// ioctl is variadic in C; a fixed (fd, request, pointer) signature passes the same registers on x86_64 and
// arm64 Linux and is a third cheaper per call through koffi.
export const ioctl = libc.func("int ioctl(int fd, unsigned long request, void *arg)") as (
  fd: number,
  request: number,
  arg: Uint8Array,
) => number;
// The fs-context calls (fsopen, fsconfig CMD_CREATE, fsmount, for kernel/netns-sysctl.ts) through syscall(2):
// their glibc wrappers came only in 2.36.
export const fsopenSyscall = libc.func("long syscall(long nr, const char *fsname, unsigned int flags)") as (
  nr: number,
  fsname: string,
  flags: number,
) => number;
export const fsconfigCreateSyscall = libc.func(
  "long syscall(long nr, int fd, unsigned int cmd, const char *key, const void *value, int aux)",
) as (nr: number, fd: number, cmd: number, key: null, value: null, aux: number) => number;
export const fsmountSyscall = libc.func(
  "long syscall(long nr, int fd, unsigned int flags, unsigned int attrs)",
) as (nr: number, fd: number, flags: number, attrs: number) => number;
export const openat = libc.func("int openat(int dirfd, const char *path, int flags)") as (
  dirfd: number,
  path: string,
  flags: number,
) => number;
export const write = libc.func("long write(int fd, const char *buf, size_t count)") as (
  fd: number,
  buf: string,
  count: number,
) => number;
const strerrorC = libc.func("const char *strerror(int errnum)") as (errnum: number) => string;
const sigfillset = libc.func("int sigfillset(void *set)") as (set: Uint8Array) => number;
const pthreadSigmask = libc.func("int pthread_sigmask(int how, const void *set, void *oldset)") as (
  how: number,
  set: Uint8Array | null,
  oldset: Uint8Array | null,
) => number;
const SIG_BLOCK = 0;
const SIG_SETMASK = 2;
/** glibc's sigset_t: 1024 bits. */
const SIGSET_BYTES = 128;

/**
 * Runs fn with this thread's signals held back; they are delivered when it returns. For C code that gives up on a
 * syscall a signal interrupts (EINTR) instead of retrying it, as libnftables does in its netlink exchange: node's own
 * SIGCHLD, or a profiler's SIGPROF, would otherwise fail a transaction the kernel may already have committed.
 */
export function withSignalsBlocked<T>(fn: () => T): T {
  const all = new Uint8Array(SIGSET_BYTES);
  const previous = new Uint8Array(SIGSET_BYTES);
  if (sigfillset(all) !== 0 || pthreadSigmask(SIG_BLOCK, all, previous) !== 0) return fn();
  try {
    return fn();
  } finally {
    pthreadSigmask(SIG_SETMASK, previous, null);
  }
}

const execveC = libc.func("int execve(const char *path, const char **argv, const char **envp)") as (
  path: string,
  argv: (string | null)[],
  envp: (string | null)[],
) => number;
const signalC = libc.func("void *signal(int sig, void *handler)") as (sig: number, handler: null) => unknown;
const fcntlSetfd = libc.func("int fcntl(int fd, int cmd, ...)") as (
  fd: number,
  cmd: number,
  ...rest: unknown[]
) => number;
const closeRangeSyscall = libc.func(
  "long syscall(long nr, unsigned int first, unsigned int last, unsigned int flags)",
) as (nr: number, first: number, last: number, flags: number) => number;
const F_SETFD = 2;
const NR_CLOSE_RANGE = 436; // the same on x86_64 and arm64
const CLOSE_RANGE_CLOEXEC = 4;
/** Signals node sets to SIG_IGN for itself (SIGPIPE, SIGXFSZ), which an exec would otherwise hand on. */
const NODE_IGNORED_SIGNALS = [13, 25];

/**
 * Replace this process with `argv` (execve), as a spawned child would start: stdio 0-2 inherited (node opens them
 * close-on-exec), every other descriptor closed, SIGPIPE and SIGXFSZ back to default, no signal blocked. Returns
 * the errno only when the exec failed.
 */
export function execReplacing(argv: readonly string[], env: readonly string[]): number {
  for (const fd of [0, 1, 2]) fcntlSetfd(fd, F_SETFD, "int", 0);
  // Before 5.11 the kernel lacks close_range: node's own descriptors are close-on-exec already but a few.
  closeRangeSyscall(NR_CLOSE_RANGE, 3, 0xffffffff, CLOSE_RANGE_CLOEXEC);
  for (const sig of NODE_IGNORED_SIGNALS) signalC(sig, null);
  pthreadSigmask(SIG_SETMASK, new Uint8Array(SIGSET_BYTES), null);
  execveC(argv[0]!, [...argv, null], [...env, null]);
  return errno();
}

/** open(2); the mode is passed as the variadic third argument, as libc expects. */
export function open(path: string, flags: number, mode = 0): number {
  return openVariadic(path, flags, "int", mode);
}

/** errno of the last libc call made through koffi on this thread. */
export function errno(): number {
  return koffi.errno();
}

export function strerror(errnum: number): string {
  return strerrorC(errnum);
}

// ENOTSUP and EOPNOTSUPP share 95 on Linux, EWOULDBLOCK is EAGAIN, EDEADLOCK is EDEADLK: prefer the names
// the kernel sources and iproute2 print.
const PREFERRED = new Set(["EOPNOTSUPP", "EAGAIN", "EDEADLK"]);
const ERRNO_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(koffi.os.errno as Record<string, number>)) {
  if (!ERRNO_NAMES.has(value) || PREFERRED.has(name)) ERRNO_NAMES.set(value, name);
}

export function errnoName(errnum: number): string {
  return ERRNO_NAMES.get(errnum) ?? `E${errnum}`;
}

export const O_RDONLY = 0;
export const O_CLOEXEC = 0o2000000;
export const O_DIRECTORY = 0o200000;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const CLONE_NEWNET = 0x40000000;
export const MS_BIND = 0x1000;
export const MS_REC = 0x4000;
export const MS_SHARED = 1 << 20;
export const MNT_DETACH = 2;
// Socket flags shared by the raw sockets of this layer (netlink.ts, notify.ts, udp-batch.ts).
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;
