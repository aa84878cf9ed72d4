/**
 * Pinning for a load test on a small machine: the load generator on one core, the server under test on another, so
 * a figure is the server's and not the share of two cores the scheduler happened to give it beside its client.
 * Through taskset (util-linux): an argv prefix for a process to start, and `taskset -a -p` for every thread of one
 * already running.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

export interface CoreSplit {
  /** Where the load generator runs. */
  load: number;
  /** Where the server under test runs, every thread of it. */
  server: number;
  /** What this process may use, as taskset writes it: what a server gets back once the pinned part is over. */
  all: string;
}

/** The CPUs this process may run on, from /proc/self/status (`Cpus_allowed_list: 0-1`). */
export function allowedCpus(): number[] {
  const line = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync("/proc/self/status", "utf8"));
  if (!line) return [];
  return line[1]!.split(",").flatMap((part) => {
    const [from, to] = part.split("-").map(Number);
    return Array.from({ length: (to ?? from!) - from! + 1 }, (_, i) => from! + i);
  });
}

/** The first allowed CPU for the load, the second for the server; undefined on a single CPU (nothing to split). */
export function coreSplit(cpus: readonly number[] = allowedCpus()): CoreSplit | undefined {
  if (cpus.length < 2) return undefined;
  return { load: cpus[0]!, server: cpus[1]!, all: cpus.join(",") };
}

/** argv that starts `argv` on `cpus` only (its children and threads inherit it). */
export function onCpus(cpus: number | string, argv: readonly string[]): string[] {
  return ["taskset", "-c", String(cpus), ...argv];
}

/** Every thread of the running process `pid` onto `cpus`. */
export function pinProcess(pid: number, cpus: number | string): void {
  const r = spawnSync("taskset", ["-a", "-p", "-c", String(cpus), String(pid)], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`taskset -a -p -c ${cpus} ${pid}: ${(r.stderr || r.stdout).trim()}`);
}
