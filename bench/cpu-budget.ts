/**
 * A CPU budget below one core for a server under load (CFS bandwidth control): a cgroup whose processes together
 * may run `share` of one core in every period, so that a rate measured against it is the server's capacity at that
 * budget and not the load generator's ceiling. The cgroup lives under a parent made for one bench run, removed
 * afterwards.
 *
 * Where the cpu controller is depends on the machine: on a pure cgroup v2 host it is in the cgroup2 mount (`cpu.max`,
 * after `+cpu` in the parent's cgroup.subtree_control); on a hybrid host (this one: cgroup2 at /sys/fs/cgroup/unified
 * with only hugetlb in its cgroup.controllers, cpu on a v1 hierarchy of its own) it is the v1 mount with the `cpu`
 * option (`cpu.cfs_period_us` and `cpu.cfs_quota_us`). The kernel's CFS throttling is the same code under both.
 * Both are found in /proc/self/mounts, never assumed.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cgroup2Mounts } from "../src/kernel/cgroup.ts";

export interface CpuBudgetSpec {
  /** The share of one core, 0 < share <= 1. */
  share: number;
  /** The CFS period in microseconds: how long a throttled server may wait for its next slice at most. */
  periodUs: number;
}

/** Where a cpu controller can be used: cgroup v2 (cpu.max) or a v1 hierarchy with the cpu option. */
export interface CpuController {
  version: 1 | 2;
  mount: string;
}

/** The v1 mounts whose options name the cpu controller (`cgroup ... cgroup rw,relatime,cpu 0 0`, or cpu,cpuacct). */
function cpuV1Mounts(mounts: string): string[] {
  return mounts
    .split("\n")
    .map((line) => line.split(" "))
    .filter((f) => f[2] === "cgroup" && (f[3] ?? "").split(",").includes("cpu"))
    .map((f) => f[1]!);
}

/** The cpu controller this process can use: cgroup v2's when its root offers it, else v1's; undefined: none. */
export function findCpuController(
  mounts = readFileSync("/proc/self/mounts", "utf8"),
  v2Roots = cgroup2Mounts(),
  controllersOf = (root: string) => readFileSync(join(root, "cgroup.controllers"), "utf8"),
): CpuController | undefined {
  for (const root of v2Roots) {
    let controllers = "";
    try {
      controllers = controllersOf(root);
    } catch {
      continue;
    }
    if (controllers.split(/\s+/).includes("cpu")) return { version: 2, mount: root };
  }
  const v1 = cpuV1Mounts(mounts)[0];
  return v1 === undefined ? undefined : { version: 1, mount: v1 };
}

/** The files and values that set `spec` on a cgroup of this controller's version. */
export function budgetWrites(version: 1 | 2, spec: CpuBudgetSpec): [file: string, value: string][] {
  if (!(spec.share > 0 && spec.share <= 1))
    throw new Error(`cpu budget share: ${spec.share} is not in (0, 1]`);
  if (!Number.isInteger(spec.periodUs) || spec.periodUs < 1000 || spec.periodUs > 1_000_000)
    throw new Error(`cpu budget periodUs: ${spec.periodUs} is not an integer in [1000, 1000000]`);
  const quotaUs = Math.round(spec.share * spec.periodUs);
  return version === 2
    ? [["cpu.max", `${quotaUs} ${spec.periodUs}`]]
    : [
        ["cpu.cfs_period_us", String(spec.periodUs)],
        ["cpu.cfs_quota_us", String(quotaUs)],
      ];
}

/** The cgroup's throttling counters (cpu.stat, the same names under v1 and v2). */
export interface Throttling {
  periods: number;
  throttled: number;
}

/**
 * One budget cgroup under a parent of its own (`parentName` in the controller's mount). put() moves a whole process
 * (every thread) in; release() moves it back to where it was; remove() takes the cgroups away.
 */
export class CpuBudget {
  readonly parent: string;
  readonly dir: string;
  private readonly homes = new Map<number, string>();

  constructor(
    readonly controller: CpuController,
    readonly spec: CpuBudgetSpec,
    parentName: string,
  ) {
    this.parent = join(controller.mount, parentName);
    this.dir = join(this.parent, "server");
    mkdirSync(this.parent);
    try {
      if (controller.version === 2) writeFileSync(join(this.parent, "cgroup.subtree_control"), "+cpu");
      mkdirSync(this.dir);
      for (const [file, value] of budgetWrites(controller.version, spec))
        writeFileSync(join(this.dir, file), value);
    } catch (err) {
      this.remove();
      throw err;
    }
  }

  /** How it is set, for the notes: the files and the values written. */
  describe(): string {
    const writes = budgetWrites(this.controller.version, this.spec)
      .map(([f, v]) => `${f} = ${v}`)
      .join(", ");
    return `cgroup v${this.controller.version} at ${this.controller.mount}, a parent made for the run and removed after it, its child with ${writes}`;
  }

  /** Moves process `pid`, every thread of it, into the budget. */
  put(pid: number): void {
    this.homes.set(pid, this.currentCgroup(pid));
    writeFileSync(join(this.dir, "cgroup.procs"), String(pid));
  }

  /** Moves `pid` back to the cgroup it was in before put() (a process gone meanwhile: nothing to move). */
  release(pid: number): void {
    const home = this.homes.get(pid);
    this.homes.delete(pid);
    if (home === undefined) return;
    try {
      writeFileSync(join(home, "cgroup.procs"), String(pid));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }

  throttling(): Throttling {
    const stat = readFileSync(join(this.dir, "cpu.stat"), "utf8");
    const field = (name: string) => Number(new RegExp(`^${name} (\\d+)`, "m").exec(stat)?.[1] ?? Number.NaN);
    return { periods: field("nr_periods"), throttled: field("nr_throttled") };
  }

  /** Every process still inside goes back home first; then both cgroups go. */
  remove(): void {
    for (const pid of [...this.homes.keys()]) this.release(pid);
    for (const dir of [this.dir, this.parent]) if (existsSync(dir)) rmdirSync(dir);
  }

  /** The process's cgroup in this controller's hierarchy, from /proc/PID/cgroup (`0::/x` or `1:cpu:/x`). */
  private currentCgroup(pid: number): string {
    for (const line of readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n")) {
      const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
      if (path === undefined) continue;
      const matches =
        this.controller.version === 2 ? controllers === "" : controllers!.split(",").includes("cpu");
      if (matches) return join(this.controller.mount, path);
    }
    throw new Error(`no ${this.controller.version === 2 ? "cgroup2" : "cpu"} line in /proc/${pid}/cgroup`);
  }
}
