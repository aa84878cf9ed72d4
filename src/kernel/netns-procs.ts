/**
 * The processes inside a network namespace, found the way `ip netns pids` finds them: every task whose
 * /proc/PID/task/TID/ns/net is the same nsfs inode (device and inode) as the namespace file. Tasks, not only
 * processes: setns() moves one thread, so a process whose main thread is elsewhere can still hold a thread inside.
 * A namespace has no cgroup.kill: emptying one is SIGKILL round after round until no task is left, a fork that raced
 * one round being listed in the next.
 */
import { readdirSync, statSync } from "node:fs";

/** Same bound as cgroup-kill.ts: a process in uninterruptible sleep dies only when its I/O ends. */
export const NETNS_KILL_TIMEOUT_MS = 5000;
const ROUND_MS = 10;

/** The pids (thread-group ids) with at least one task in the namespace at `path`; [] when the file is gone. */
export function netnsProcs(path: string): number[] {
  let ns: { dev: number; ino: number };
  try {
    ns = statSync(path);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    if (tasksOf(pid).some((tid) => sameNs(`/proc/${pid}/task/${tid}/ns/net`, ns))) out.push(pid);
  }
  return out;
}

/** SIGKILL every process of the namespace and wait until none is left; returns the pids still there at the deadline. */
export function killNetnsProcs(path: string, timeoutMs = NETNS_KILL_TIMEOUT_MS): number[] {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = netnsProcs(path);
    if (pids.length === 0) return [];
    if (Date.now() >= deadline) return pids;
    for (const pid of pids) sigkill(pid);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ROUND_MS);
  }
}

function tasksOf(pid: number): string[] {
  try {
    return readdirSync(`/proc/${pid}/task`);
  } catch {
    // Exited while we looked.
    return [];
  }
}

function sameNs(link: string, ns: { dev: number; ino: number }): boolean {
  try {
    const st = statSync(link);
    return st.ino === ns.ino && st.dev === ns.dev;
  } catch {
    // An exiting task (ENOENT) or a kernel thread we may not look into: not one of the namespace's.
    return false;
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
