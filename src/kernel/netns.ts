/**
 * Network namespaces without forking. setns() moves only the calling thread, so every window here is
 * synchronous: enter, do the work, come back. /run/netns/NAME bind mounts follow the `ip netns` convention.
 */
import { existsSync, mkdirSync, readdirSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { invalid } from "../errors.ts";
import { EINVAL, ENOENT, ENOSPC, EPERM, EUSERS, KernelError } from "./errors.ts";
import * as ffi from "./ffi.ts";
import { distFunction } from "./native.ts";

export const NETNS_DIR = "/run/netns";
const SELF_NET = "/proc/thread-self/ns/net";

export function netnsPath(name: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || name === "." || name === "..")
    throw invalid("netns", `"${name}" is not a valid namespace name`);
  return `${NETNS_DIR}/${name}`;
}

function openNs(path: string, op: string): number {
  const fd = ffi.open(path, ffi.O_RDONLY | ffi.O_CLOEXEC);
  if (fd < 0) throw new KernelError(op, ffi.errno());
  return fd;
}

function switchBack(home: number, what: string): void {
  if (ffi.setns(home, ffi.CLONE_NEWNET) === 0) return;
  const e = ffi.errno();
  // The main thread would keep running in the wrong namespace: every later kernel call would hit it.
  process.stderr.write(
    `netctx: fatal: cannot return to the original network namespace after ${what}: ${ffi.strerror(e)}\n`,
  );
  process.abort();
}

let shared = false;

/** `ip netns` makes /run/netns a shared mount so namespaces stay visible to later mount namespaces. */
function ensureNetnsDir(): void {
  if (shared) return;
  mkdirSync(NETNS_DIR, { recursive: true, mode: 0o755 });
  if (ffi.mount(null, NETNS_DIR, null, ffi.MS_SHARED | ffi.MS_REC, null) !== 0) {
    // EINVAL: not a mount point yet; make it one (a bind onto itself) and share it.
    if (ffi.errno() !== EINVAL) throw new KernelError(`mount --make-shared ${NETNS_DIR}`, ffi.errno());
    if (ffi.mount(NETNS_DIR, NETNS_DIR, "none", ffi.MS_BIND | ffi.MS_REC, null) !== 0)
      throw new KernelError(`mount --bind ${NETNS_DIR}`, ffi.errno());
    if (ffi.mount(null, NETNS_DIR, null, ffi.MS_SHARED | ffi.MS_REC, null) !== 0)
      throw new KernelError(`mount --make-shared ${NETNS_DIR}`, ffi.errno());
  }
  shared = true;
}

/**
 * Who owns a new namespace: the host's user namespace, as `ip netns add` makes it, or a user namespace of its own
 * (an l2 context's: what root inside keeps then counts in that namespace only; netns-owned.c says why).
 */
export type NetnsOwner = "host" | "own";

/** dist/libnetctx-netns.so's netns_create_owned, or null when it was not built (no C compiler). */
const createOwnedNative = distFunction<(path: string) => number>(
  "libnetctx-netns.so",
  "int netns_create_owned(const char *path)",
);

/** Where the kernel has no user namespaces to give (off, or user.max_user_namespaces reached). */
const NO_USERNS = new Set([EPERM, EINVAL, ENOSPC, EUSERS]);

/**
 * Mounts a namespace owned by a new user namespace on the marked path. False when that cannot be had here (the
 * library was not built, or the kernel gives no user namespace): the caller makes a host-owned one, and
 * `netctx exec` then withholds CAP_NET_ADMIN and says why (netctx-enter.c).
 */
function mountOwnedNetns(path: string, op: string): boolean {
  const create = createOwnedNative();
  if (!create) return false;
  const rc = create(path);
  if (rc === 0) return true;
  if (NO_USERNS.has(-rc)) return false;
  throw new KernelError(op, -rc);
}

/** Creates /run/netns/NAME holding a new network namespace; returns its path. */
export function createNetns(name: string, owner: NetnsOwner = "host"): string {
  const path = netnsPath(name);
  const op = `netns add ${name}`;
  ensureNetnsDir();
  const mark = ffi.open(path, ffi.O_RDONLY | ffi.O_CREAT | ffi.O_EXCL | ffi.O_CLOEXEC, 0);
  if (mark < 0) throw new KernelError(op, ffi.errno());
  ffi.close(mark);
  try {
    if (owner === "own" && mountOwnedNetns(path, op)) return path;
  } catch (err) {
    unlinkQuiet(path);
    throw err;
  }
  const home = openNs(SELF_NET, op);
  try {
    if (ffi.unshare(ffi.CLONE_NEWNET) !== 0) {
      const e = ffi.errno();
      unlinkQuiet(path);
      throw new KernelError(op, e);
    }
    const rc = ffi.mount(SELF_NET, path, "none", ffi.MS_BIND, null);
    const e = ffi.errno();
    switchBack(home, op);
    if (rc !== 0) {
      unlinkQuiet(path);
      throw new KernelError(op, e);
    }
  } finally {
    ffi.close(home);
  }
  return path;
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** Removes /run/netns/NAME; the kernel frees the namespace once nothing else holds it. Missing is fine. */
export function deleteNetns(name: string): void {
  const path = netnsPath(name);
  if (ffi.umount2(path, ffi.MNT_DETACH) !== 0) {
    const e = ffi.errno();
    // EINVAL: not a mount point (a half-made one); ENOENT: never existed.
    if (e !== EINVAL && e !== ENOENT) throw new KernelError(`netns delete ${name}`, e);
  }
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT")
      throw new KernelError(`netns delete ${name}`, errnoOf(err));
  }
}

function errnoOf(err: unknown): number {
  const n = (err as NodeJS.ErrnoException).errno;
  return typeof n === "number" ? Math.abs(n) : EINVAL;
}

export function listNetns(): string[] {
  try {
    return readdirSync(NETNS_DIR).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

/**
 * Runs fn with this thread in the network namespace at path and always comes back. fn must be synchronous:
 * an await inside would let other work run in the wrong namespace.
 */
export function inNetns<T>(path: string, fn: () => T): T {
  const op = `setns ${path}`;
  const target = openNs(path, op);
  let home: number;
  try {
    home = openNs(SELF_NET, op);
  } catch (err) {
    ffi.close(target);
    throw err;
  }
  try {
    if (ffi.setns(target, ffi.CLONE_NEWNET) !== 0) throw new KernelError(op, ffi.errno());
  } catch (err) {
    ffi.close(target);
    ffi.close(home);
    throw err;
  }
  ffi.close(target);
  let result: T;
  try {
    result = fn();
  } finally {
    switchBack(home, op);
    ffi.close(home);
  }
  if (result instanceof Promise) throw new KernelError(op, EINVAL, "inNetns callback must be synchronous");
  return result;
}
