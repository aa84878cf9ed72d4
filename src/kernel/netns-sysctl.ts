/**
 * Sysctls of another network namespace, written without the global /proc's cost that grows with namespaces.
 *
 * /proc/sys/net/ipv4 of every network namespace is a dentry named "ipv4" under the one /proc/sys/net dentry of the
 * /proc superblock (likewise ipv6): they share one dcache hash chain, and a namespace's first lookup, a miss, walks
 * all of them (proc_sys_compare on each). Measured here, four writes in a fresh namespace: ~100 us with 100
 * namespaces around that had looked theirs up, ~600 us with 1000 (why the README avoids per-context sysctls).
 * Dentries belong to a superblock, so a procfs instance of our own holds only the chains of the namespaces looked
 * up through it: made with fsopen/fsmount, it is a detached mount, in no mount namespace, gone with its fd. It is
 * replaced after REUSE namespaces, which keeps the chains short however long the process lives: ~40 us for the
 * four writes, flat from 100 to 1000 namespaces (a new instance costs ~100 us, spread over REUSE). Where the kernel
 * refuses one (before 5.2, or a seccomp filter in the way), the writes go through /proc/sys as usual.
 */
import { KernelError } from "./errors.ts";
import * as ffi from "./ffi.ts";
import { inNetns } from "./netns.ts";
import { writeSysctl } from "./sysctl.ts";

// The fs-context syscalls have one number on every architecture (the asm-generic table).
const SYS_FSOPEN = 430;
const SYS_FSCONFIG = 431;
const SYS_FSMOUNT = 432;
const FSOPEN_CLOEXEC = 1;
const FSCONFIG_CMD_CREATE = 6;
const FSMOUNT_CLOEXEC = 1;
const O_WRONLY = 1;

/** Namespaces looked up through one instance before the next: ~100 us spread thin, chains of at most this. */
const REUSE = 32;

let instance: { fd: number; uses: number } | "unavailable" | undefined;

/** A new procfs instance's root, or -1 when the kernel refuses one. */
function newProcfs(): number {
  const ctx = ffi.fsopenSyscall(SYS_FSOPEN, "proc", FSOPEN_CLOEXEC);
  if (ctx < 0) return -1;
  try {
    if (ffi.fsconfigCreateSyscall(SYS_FSCONFIG, ctx, FSCONFIG_CMD_CREATE, null, null, 0) < 0) return -1;
    return ffi.fsmountSyscall(SYS_FSMOUNT, ctx, FSMOUNT_CLOEXEC, 0);
  } finally {
    ffi.close(ctx);
  }
}

/** The procfs root to look the next namespace's sysctls up in; undefined: use /proc. */
function procfsForNextNamespace(): number | undefined {
  if (instance === "unavailable") return undefined;
  if (instance && instance.uses < REUSE) {
    instance.uses++;
    return instance.fd;
  }
  if (instance) ffi.close(instance.fd);
  const fd = newProcfs();
  instance = fd < 0 ? "unavailable" : { fd, uses: 1 };
  return fd < 0 ? undefined : fd;
}

function writeAt(root: number, key: string, value: string): void {
  const fd = ffi.openat(root, `sys/${key}`, O_WRONLY | ffi.O_CLOEXEC);
  if (fd < 0) throw new KernelError(`sysctl ${key}`, ffi.errno());
  try {
    if (ffi.write(fd, value, Buffer.byteLength(value)) < 0)
      throw new KernelError(`sysctl ${key}=${value}`, ffi.errno());
  } finally {
    ffi.close(fd);
  }
}

/**
 * Write sysctls (keys relative to /proc/sys: "net/ipv6/conf/default/accept_ra") inside the netns at `netnsPath`, in
 * one setns window. `tolerate` may excuse a key's failure (a kernel without IPv6 has no net/ipv6).
 */
export function writeNetnsSysctls(
  netnsPath: string,
  values: readonly (readonly [key: string, value: string])[],
  tolerate: (key: string, err: KernelError) => boolean = () => false,
): void {
  const root = procfsForNextNamespace();
  inNetns(netnsPath, () => {
    for (const [key, value] of values) {
      try {
        if (root === undefined) writeSysctl(key, value);
        else writeAt(root, key, value);
      } catch (err) {
        if (!(err instanceof KernelError && tolerate(key, err))) throw err;
      }
    }
  });
}
