/**
 * cgroup v2 directories for contexts. No controllers are needed: the directory is only an anchor for
 * BPF programs and a set of processes.
 */
import { mkdirSync, readdirSync, readFileSync, rmdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { NetctxError } from "../errors.ts";

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

/** Where shared-stack contexts' cgroups live, made on first use. */
export function contextsCgroupParent(): string {
  const parent = contextsCgroupParentPath();
  mkdirSync(parent, { recursive: true });
  return parent;
}

/** The same path without making it (for readers such as gc: looking must not create). */
export function contextsCgroupParentPath(): string {
  return process.env.NETCTX_CGROUP_PARENT ?? join(cgroup2Root(), "netctx");
}

export function createCgroup(path: string): void {
  mkdirSync(path, { recursive: true });
}

function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
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
