/**
 * Emptying a cgroup subtree by force. cgroup.kill (Linux 5.14+) SIGKILLs every process of the subtree in one write,
 * and the kernel holds back forks while it runs, so no child escapes the kill. Where it is missing, each listed pid
 * gets SIGKILL, round after round until the subtree is empty: a fork that raced one round is listed in the next.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { sleepSync } from "../sleep-sync.ts";
import { subtreeProcs } from "./cgroup.ts";

export interface KillOptions {
  /** Give up after this long: a process in uninterruptible sleep dies only when its I/O ends. */
  timeoutMs?: number;
  /** false: signal pid by pid even where cgroup.kill exists (tests of the older kernels' path). */
  cgroupKill?: boolean;
}

export const KILL_TIMEOUT_MS = 5000;
const ROUND_MS = 10;

/** Kill every process in the subtree and wait until it is empty; returns the pids still there at the deadline. */
export function killSubtree(path: string, opts: KillOptions = {}): number[] {
  const deadline = Date.now() + (opts.timeoutMs ?? KILL_TIMEOUT_MS);
  let useKillFile = opts.cgroupKill !== false;
  for (;;) {
    const pids = subtreeProcs(path);
    if (pids.length === 0) return [];
    if (Date.now() >= deadline) return pids;
    // Every round, not once: a process that joined after the first write (an exec that raced rm) goes too.
    if (useKillFile) useKillFile = writeKillFile(path);
    if (!useKillFile) for (const pid of pids) sigkill(pid);
    sleepSync(ROUND_MS);
  }
}

/** false when this kernel (or this cgroup: threaded ones refuse it) has no cgroup.kill. */
function writeKillFile(path: string): boolean {
  try {
    writeFileSync(join(path, "cgroup.kill"), "1");
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "EOPNOTSUPP" || code === "EINVAL") return false;
    throw err;
  }
}

/**
 * The pid was read from cgroup.procs a moment ago; if that process exited since, the pid could in theory name a new
 * process outside. cgroup.kill has no such window, and pids are handed out in order, so reuse within one round
 * needs the whole pid space to wrap.
 */
function sigkill(pid: number): void {
  // cgroup.procs shows 0 for a process outside our PID namespace, and kill(0) would signal our own process group.
  if (pid <= 0) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}
