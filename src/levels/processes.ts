/**
 * The processes of a context, one rule at every level (issue 17): rm refuses while any runs, naming them, and
 * rm --force kills them all first. Where they live depends on the level: in the cgroup's subtree (l3, socket), where
 * a process in a child cgroup counts as much as one in the context's own (it is confined only as long as the
 * programs on the context's cgroup stay, and they go with it); or in the context's own netns (l2), where a process
 * left behind would keep running in a detached namespace, unreachable by any later netctx command.
 * A netns that belongs to somebody else (a container runtime's, netnsExternal) holds the runtime's processes: the
 * runtime decides when they end, so they neither block a removal nor get killed by one.
 */
import { readFileSync } from "node:fs";
import { conflict, NetctxError } from "../errors.ts";
import { subtreeProcs } from "../kernel/cgroup.ts";
import { KILL_TIMEOUT_MS, killSubtree } from "../kernel/cgroup-kill.ts";
import { killNetnsProcs, NETNS_KILL_TIMEOUT_MS, residentNetnsProcs } from "../kernel/netns-procs.ts";
import type { ContextSpec } from "./driver.ts";

/** How many processes an error names; the rest are counted. */
const NAMED = 10;

/** Where a context keeps its processes: the parts of its spec that say so. */
export type ProcessHome = Pick<ContextSpec, "cgroup" | "netns" | "netnsExternal">;

interface Residents {
  list(): number[];
  /** Kill them all and wait (bounded); returns those still there at the deadline. */
  kill(): number[];
  timeoutMs: number;
}

function residentsOf(home: ProcessHome): Residents | undefined {
  const { cgroup, netns } = home;
  if (cgroup !== undefined)
    return { list: () => subtreeProcs(cgroup), kill: () => killSubtree(cgroup), timeoutMs: KILL_TIMEOUT_MS };
  if (netns !== undefined && home.netnsExternal !== true)
    return {
      list: () => residentNetnsProcs(netns),
      kill: () => killNetnsProcs(netns),
      timeoutMs: NETNS_KILL_TIMEOUT_MS,
    };
  return undefined;
}

/** Refuses (conflict, naming the processes) while anything runs in the context; changes nothing. */
export function refuseWhileRunning(name: string, home: ProcessHome): void {
  const pids = residentsOf(home)?.list() ?? [];
  if (pids.length > 0)
    throw conflict(
      "context",
      `processes ${describe(pids)} still run in "${name}"; stop them or use --force to kill them`,
    );
}

/** rm --force: kill every process of the context and wait until none is left (bounded). */
export function evictProcesses(name: string, home: ProcessHome): void {
  const residents = residentsOf(home);
  if (!residents) return;
  // A netctx that runs inside the context would kill itself half-way through its own rm.
  if (residents.list().includes(process.pid))
    throw conflict("context", `this netctx process runs inside "${name}"; run rm --force from outside it`);
  const left = residents.kill();
  if (left.length > 0)
    throw new NetctxError(
      "kernel",
      `context: processes ${describe(left)} of "${name}" still run ${residents.timeoutMs / 1000} s after SIGKILL`,
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
