/**
 * The processes inside a network namespace, found the way `ip netns pids` finds them: every task whose
 * /proc/PID/task/TID/ns/net is the same nsfs inode (device and inode) as the namespace file. Tasks, not only
 * processes: setns() moves one thread, so a process whose main thread is elsewhere can still hold a thread inside.
 * A namespace has no cgroup.kill: emptying one is SIGKILL round after round until no task is left, a fork that raced
 * one round being listed in the next.
 */
import { existsSync, readdirSync, readlinkSync, statSync } from "node:fs";
import { join } from "node:path";
import { sleepSync } from "../sleep-sync.ts";
import { ENOENT } from "./errors.ts";
import { distFunction } from "./native.ts";

/** Same bound as cgroup-kill.ts: a process in uninterruptible sleep dies only when its I/O ends. */
export const NETNS_KILL_TIMEOUT_MS = 5000;
const ROUND_MS = 10;

/** dist/libnetctx-procs.so's netns_pids (netns-procs.c, the same walk in C), or null when it was not built. */
const nativeScan = distFunction<(path: string, out: Int32Array, max: number) => number>(
  "libnetctx-procs.so",
  "int netns_pids(const char *path, int *out, int max)",
);

/**
 * The pids (thread-group ids) with at least one task in the namespace at `path`; [] when the file is gone.
 * rm runs this on every l2 context, and it walks every task of the host: a namespace link is compared by its text
 * ("net:[INODE]", one readlink; every namespace lives on the one nsfs, so the inode names it), and a process's other
 * threads are listed only when it has some (the task directory's link count is 2 + its threads).
 */
export function netnsProcs(path: string): number[] {
  const scan = nativeScan();
  if (!scan) return netnsProcsInJs(path);
  for (let room = 64; ; room *= 4) {
    const out = new Int32Array(room);
    const n = scan(path, out, room);
    if (n === -ENOENT) return [];
    if (n < 0) return netnsProcsInJs(path);
    if (n <= room) return [...out.subarray(0, n)];
  }
}

/** netnsProcs in JavaScript, when the C walk was not built (no C compiler); exported for its test. */
export function netnsProcsInJs(path: string): number[] {
  let want: string;
  try {
    want = `net:[${statSync(path).ino}]`;
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const leader = nsLink(`/proc/${pid}/ns/net`);
    if (leader === want || otherThreadIn(pid, want, leader === undefined)) out.push(pid);
  }
  return out;
}

/**
 * How long a host process's thread may be inside a namespace before it counts as living there. netctx's own engine
 * enters an l2 context's namespace for the length of a read (a setns window, well under a millisecond a namespace)
 * while another netctx process works on the same store: listed in that instant, it made a concurrent rm refuse
 * ("processes ENGINE still run"), and an rm --force would have killed the engine. Root inside an l2 context cannot
 * hop out and back in to dodge this (its user namespace gives it no setns into the host's), so what stays through
 * the grace lives there.
 */
const VISIT_GRACE_MS = 60;

/**
 * The pids of netnsProcs that stay: listed now and in every listing ROUND_MS apart for VISIT_GRACE_MS (none is
 * waited for when the first listing is empty, rm's usual case).
 */
export function residentNetnsProcs(path: string): number[] {
  let pids = netnsProcs(path);
  for (let waited = 0; pids.length > 0 && waited < VISIT_GRACE_MS; waited += ROUND_MS) {
    sleepSync(ROUND_MS);
    const now = new Set(netnsProcs(path));
    pids = pids.filter((pid) => now.has(pid));
  }
  return pids;
}

/**
 * SIGKILL every process living in the namespace (residentNetnsProcs: a visiting thread of another netctx process is
 * not one) and wait until none is left; returns the pids still there at the deadline.
 */
export function killNetnsProcs(path: string, timeoutMs = NETNS_KILL_TIMEOUT_MS): number[] {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = residentNetnsProcs(path);
    if (pids.length === 0) return [];
    if (Date.now() >= deadline) return pids;
    for (const pid of pids) sigkill(pid);
    sleepSync(ROUND_MS);
  }
}

/**
 * Whether a thread other than the leader (setns() moves one thread) is in the namespace. A leader that exited
 * before its threads has no links left and is not counted among them, so then every thread is looked at.
 */
function otherThreadIn(pid: number, want: string, leaderGone: boolean): boolean {
  let threads: number;
  try {
    threads = statSync(`/proc/${pid}/task`).nlink - 2;
  } catch {
    // Exited while we looked.
    return false;
  }
  if (threads <= 1 && !leaderGone) return false;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return false;
  }
  return tids.some((tid) => tid !== String(pid) && nsLink(`/proc/${pid}/task/${tid}/ns/net`) === want);
}

/** "net:[INODE]", or undefined for an exiting task (ENOENT) or a kernel thread we may not look into. */
function nsLink(link: string): string | undefined {
  try {
    return readlinkSync(link);
  } catch {
    return undefined;
  }
}

/**
 * A task listed a moment ago may have exited since; its pid would be reused only after the pid space wraps within
 * one round. A zombie still listed is killed again harmlessly and leaves the list once its parent reaps it: a zombie
 * has no ns links left (the kernel drops its nsproxy at exit), so it is no longer found.
 */
function sigkill(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}
