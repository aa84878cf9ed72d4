/**
 * The processes of a context that keeps them in a cgroup (l3, socket): rm refuses while any runs anywhere in the
 * cgroup's subtree, or, with --force, kills them all first. A process in a child cgroup counts as much as one in the
 * context's own: it is confined only as long as the programs on the context's cgroup stay, and they go with it.
 */
import { readFileSync } from "node:fs";
import { conflict, NetctxError } from "../errors.ts";
import { subtreeProcs } from "../kernel/cgroup.ts";
import { KILL_TIMEOUT_MS, killSubtree } from "../kernel/cgroup-kill.ts";

/** How many processes an error names; the rest are counted. */
const NAMED = 10;

/** Refuses (conflict, naming the processes) while anything runs in the subtree; changes nothing. */
export function refuseWhileRunning(name: string, cgroup: string | undefined): void {
  if (cgroup === undefined) return;
  const pids = subtreeProcs(cgroup);
  if (pids.length > 0)
    throw conflict(
      "context",
      `processes ${describe(pids)} still run in "${name}"; stop them or use --force to kill them`,
    );
}

/** rm --force: kill every process of the subtree and wait until it is empty (bounded). */
export function evictProcesses(name: string, cgroup: string | undefined): void {
  if (cgroup === undefined) return;
  // A netctx that runs inside the context would kill itself half-way through its own rm.
  if (subtreeProcs(cgroup).includes(process.pid))
    throw conflict("context", `this netctx process runs inside "${name}"; run rm --force from outside it`);
  const left = killSubtree(cgroup);
  if (left.length > 0)
    throw new NetctxError(
      "kernel",
      `context: processes ${describe(left)} of "${name}" still run ${KILL_TIMEOUT_MS / 1000} s after SIGKILL`,
      "context",
    );
}

function describe(pids: number[]): string {
  const named = pids.slice(0, NAMED).map((pid) => `${pid} (${comm(pid)})`);
  const more = pids.length > NAMED ? `, and ${pids.length - NAMED} more` : "";
  return `${named.join(", ")}${more}`;
}

/** The process's name as the kernel keeps it (15 bytes, chosen by the process: shown escaped). */
function comm(pid: number): string {
  try {
    const text = readFileSync(`/proc/${pid}/comm`, "utf8").replace(/\n$/, "");
    return text.replace(/[^\x20-\x7e]/g, "?");
  } catch {
    return "exited";
  }
}
