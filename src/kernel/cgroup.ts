/**
 * cgroup v2 directories for contexts. No controllers are needed: the directory is only an anchor for
 * BPF programs and a set of processes.
 */
import { type Dirent, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { NetctxError } from "../errors.ts";
import { sleepSync } from "../sleep-sync.ts";
import { KernelError } from "./errors.ts";
import { errno, getxattr, setxattr } from "./ffi.ts";

/** /proc/mounts escapes space, tab, newline and backslash as octal. */
function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Every cgroup2 mount point visible to this process. */
export function cgroup2Mounts(): string[] {
  let text: string;
  try {
    text = readFileSync("/proc/self/mounts", "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .map((line) => line.split(" "))
    .filter((f) => f[2] === "cgroup2" && f[1] !== undefined)
    .map((f) => unescapeMount(f[1]!));
}

export function cgroup2Root(): string {
  const root = cgroup2Mounts()[0];
  if (root === undefined)
    throw new NetctxError("unsupported", "cgroup v2 is not mounted (no cgroup2 entry in /proc/self/mounts)");
  return root;
}

/**
 * Where shared-stack contexts' cgroups live, made on first use: `configured` (config.cgroupParent), else "netctx"
 * under the cgroup2 root.
 */
export function contextsCgroupParent(configured: string | undefined): string {
  const parent = contextsCgroupParentPath(configured);
  mkdirSync(parent, { recursive: true });
  return parent;
}

/** The same path without making it (for readers such as gc: looking must not create). */
export function contextsCgroupParentPath(configured: string | undefined): string {
  return configured ?? join(cgroup2Root(), "netctx");
}

export function createCgroup(path: string): void {
  mkdirSync(path, { recursive: true });
}

/** Write an extended attribute on a cgroup (cgroup2 keeps user.* xattrs since Linux 5.7). */
export function setCgroupXattr(path: string, name: string, value: string): void {
  const bytes = new TextEncoder().encode(value);
  if (setxattr(path, name, bytes, bytes.length, 0) !== 0)
    throw new KernelError(`setxattr ${name} ${path}`, errno());
}

/** An extended attribute of a cgroup; undefined when it has none (or the kernel keeps none). */
export function cgroupXattr(path: string, name: string): string | undefined {
  const buf = new Uint8Array(256);
  const n = getxattr(path, name, buf, buf.length);
  return n < 0 ? undefined : new TextDecoder().decode(buf.subarray(0, n));
}

function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

/**
 * The cgroup and every cgroup below it, each parent before its children (a missing cgroup: none). Root inside a
 * context can make child cgroups of the context's own (user and cgroup namespaces, a fresh cgroup2 mount), so
 * whoever asks what runs in a context must look at the whole subtree.
 */
export function cgroupSubtree(path: string): string[] {
  const out: string[] = [];
  const pending = [path];
  for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch (err) {
      // Gone meanwhile (rmdir races the listing): nothing runs in it.
      if (errCode(err) === "ENOENT") continue;
      throw err;
    }
    out.push(dir);
    for (const e of entries) if (e.isDirectory()) pending.push(join(dir, e.name));
  }
  return out;
}

/** Every process anywhere in the subtree: one in a child cgroup is not in its parent's cgroup.procs. */
export function subtreeProcs(path: string): number[] {
  return [...new Set(cgroupSubtree(path).flatMap(cgroupProcs))];
}

/**
 * Remove the cgroup and every cgroup below it, children first. The kernel refuses each rmdir (EBUSY) while a
 * process is in that cgroup, under the same lock that moves processes in, so a process that joins after the
 * caller looked makes this fail rather than be left behind.
 */
export function removeCgroupTree(path: string): void {
  for (const dir of cgroupSubtree(path).reverse()) removeCgroupSettled(dir);
}

/** A process that has just exited can keep its cgroup busy for a moment after it left cgroup.procs. */
function removeCgroupSettled(path: string): void {
  for (let attempt = 0; ; attempt++) {
    try {
      removeCgroup(path);
      return;
    } catch (err) {
      const busy =
        err instanceof NetctxError && err.message.includes("EBUSY") && subtreeProcs(path).length === 0;
      if (!busy || attempt >= 50) throw err;
      sleepSync(20);
    }
  }
}

export function removeCgroup(path: string): void {
  try {
    rmdirSync(path);
  } catch (err) {
    const code = errCode(err);
    if (code === "ENOENT") return;
    if (code === "EBUSY") {
      const pids = cgroupProcs(path);
      const children = readdirSync(path, { withFileTypes: true }).filter((e) => e.isDirectory()).length;
      const why = pids.length
        ? `processes ${pids.slice(0, 10).join(", ")}${pids.length > 10 ? ", ..." : ""} still run in it`
        : children
          ? `it has ${children} child cgroup(s)`
          : "it is in use";
      throw new NetctxError("kernel", `cannot remove cgroup ${path}: EBUSY: ${why}`, "cgroup");
    }
    throw err;
  }
}

export function cgroupId(path: string): bigint {
  return statSync(path, { bigint: true }).ino;
}

export function cgroupProcs(path: string): number[] {
  let text: string;
  try {
    text = readFileSync(join(path, "cgroup.procs"), "utf8");
  } catch (err) {
    if (errCode(err) === "ENOENT") return [];
    throw err;
  }
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map(Number);
}
