/**
 * Memory readings for the bench: kernel slab (machine-wide, so other work on the machine shows up as noise), the
 * state database's size on disk, a process's resident set; and a wait for the kernel's deferred netns cleanup.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { DB_FILE } from "../src/state/db.ts";
import { sleep } from "./stats.ts";

export interface KernelMemory {
  slabKb: number;
  sunreclaimKb: number;
}

/** Slab before a walk and with exactly n contexts alive (missing when that cell failed). */
export interface KernelReading {
  n: number;
  before: KernelMemory;
  atN?: KernelMemory;
}

export function kernelMemory(): KernelMemory {
  const text = readFileSync("/proc/meminfo", "utf8");
  const kb = (key: string) => Number(text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"))?.[1] ?? Number.NaN);
  return { slabKb: kb("Slab"), sunreclaimKb: kb("SUnreclaim") };
}

export interface DatabaseSize {
  /** Pages in use (page_count - freelist_count) times page_size, read through the WAL: the data itself. */
  liveBytes: number;
  /** The database, WAL and shared-memory files on disk (the WAL is reused in place and only ever grows). */
  fileBytes: number;
}

export function databaseSize(stateDir: string): DatabaseSize {
  let fileBytes = 0;
  for (const name of readdirSync(stateDir))
    if (name.startsWith(DB_FILE)) fileBytes += statSync(join(stateDir, name)).size;
  const db = new Database(join(stateDir, DB_FILE), { readonly: true });
  try {
    const pragma = (name: string) => Number(db.pragma(name, { simple: true }));
    return { liveBytes: (pragma("page_count") - pragma("freelist_count")) * pragma("page_size"), fileBytes };
  } finally {
    db.close();
  }
}

export function statusKb(pid: number, key: "VmRSS" | "VmHWM"): number {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"))?.[1] ?? Number.NaN);
}

/** Live network namespaces on the machine (slab objects of net_namespace); undefined where slabinfo is closed. */
function liveNetns(): number | undefined {
  try {
    const line = readFileSync("/proc/slabinfo", "utf8")
      .split("\n")
      .find((l) => l.startsWith("net_namespace "));
    return line ? Number(line.split(/\s+/)[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A deleted netns is torn down later by a kernel worker (veths, routes, sockets): wait until that work is done
 * (the count stops falling) so the next figure is not measured against it. Gives up after `maxMs`.
 */
export async function settleNetns(maxMs = 30_000): Promise<void> {
  const t0 = Date.now();
  let last = liveNetns();
  if (last === undefined) {
    await sleep(1000);
    return;
  }
  let still = 0;
  while (Date.now() - t0 < maxMs && still < 3) {
    await sleep(250);
    const now = liveNetns()!;
    still = now < last ? 0 : still + 1;
    last = now;
  }
}
