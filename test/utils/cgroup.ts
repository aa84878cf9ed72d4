/** Processes and cgroups as /proc and cgroupfs show them, read here rather than through src/. */
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** argv that moves the shell into the cgroup before exec'ing the command, so nothing starts outside it. */
export function inCgroupArgv(cgroup: string | undefined, argv: string[]): string[] {
  if (!cgroup) return argv;
  return ["sh", "-c", 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', "sh", cgroup, ...argv];
}

/** The pids in one cgroup (not its children); [] once the cgroup is gone. */
export function procsOf(cgroup: string): number[] {
  try {
    return readFileSync(join(cgroup, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** A process's name as the kernel keeps it; undefined once it is gone. */
export function commOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return undefined;
  }
}
