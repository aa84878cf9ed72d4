/**
 * Where the shared-stack contexts' traffic counters live (kernel/bpf/counter-program.ts): one per-CPU map and a
 * counter program per direction on the contexts' cgroup parent, beside the policy data path's programs (BPF_F_ALLOW_
 * MULTI), so every context cgroup beneath runs them and a context costs no program of its own. A later process finds
 * the map by querying the parent's programs (no bpffs), as the policy data path does.
 *
 * The map is an LRU hash: a removed context's entry (its cgroup id is never used again) ages out instead of waiting
 * for somebody to delete it. MAX_ENTRIES bounds the contexts counted at once; past it the least recently counted
 * context starts again from zero.
 */
import { readFileSync } from "node:fs";
import { NetctxError } from "../errors.ts";
import { type Host, hostSlot } from "../host.ts";
import type { AttachTypeName } from "../kernel/bpf/abi.ts";
import {
  attachProgram,
  detachProgram,
  loadProgram,
  openCgroup,
  progFdById,
  progInfo,
  queryPrograms,
  withFd,
} from "../kernel/bpf/attach.ts";
import {
  type CgroupCounts,
  COUNTER_KEY_SIZE,
  COUNTER_MAP_NAME,
  COUNTER_PROGRAM_NAMES,
  COUNTER_VALUE_SIZE,
  type CounterDirection,
  counterProgram,
  sumPerCpu,
} from "../kernel/bpf/counter-program.ts";
import { createMap, MapType, mapEntriesBatch, mapFdById, mapInfo } from "../kernel/bpf/maps.ts";
import { closeFd } from "../kernel/bpf/syscall.ts";
import { contextsCgroupParent, contextsCgroupParentPath } from "../kernel/cgroup.ts";
import { KernelError } from "../kernel/errors.ts";

export type { CgroupCounts };

const MAX_ENTRIES = 16384;
const HOOKS: Record<CounterDirection, AttachTypeName> = {
  rx: "CGROUP_INET_INGRESS",
  tx: "CGROUP_INET_EGRESS",
};

/** The map's fd once this process found or made it (kept open for the process's life, like the policy maps). */
const KNOWN = hostSlot((): { map: number | undefined } => ({ map: undefined }));

/** Possible CPUs ("0-63", "0,2-3"): a per-CPU value has a slot for each, online or not. */
function possibleCpus(): number {
  const text = readFileSync("/sys/devices/system/cpu/possible", "utf8").trim();
  let n = 0;
  for (const part of text.split(",")) {
    const [lo, hi] = part.split("-").map(Number);
    n = Math.max(n, (hi ?? lo ?? 0) + 1);
  }
  return n;
}

let cpus: number | undefined;

/** The counters' map used by the parent's rx counter program; undefined when none is attached. */
function findMap(host: Host): number | undefined {
  let parent: string;
  try {
    parent = contextsCgroupParentPath(host.config.cgroupParent);
  } catch {
    return undefined; // no cgroup v2
  }
  let cg: number;
  try {
    cg = openCgroup(parent);
  } catch (err) {
    if (err instanceof NetctxError && err.code === "not-found") return undefined;
    throw err;
  }
  return withFd(cg, () => {
    for (const id of queryPrograms(cg, HOOKS.rx).sort((x, y) => x - y)) {
      let fd: number;
      try {
        fd = progFdById(id);
      } catch (err) {
        if (err instanceof KernelError && err.errnoName === "ENOENT") continue;
        throw err;
      }
      try {
        const info = progInfo(fd);
        if (info.name !== COUNTER_PROGRAM_NAMES.rx) continue;
        for (const mapId of info.mapIds) {
          const map = mapFdById(mapId);
          if (mapInfo(map).name === COUNTER_MAP_NAME) return map;
          closeFd(map);
        }
      } finally {
        closeFd(fd);
      }
    }
    return undefined;
  });
}

function mapIfAny(host: Host): number | undefined {
  const known = host.cache(KNOWN);
  known.map ??= findMap(host);
  return known.map;
}

/**
 * The counters' map, with its programs attached on the contexts' cgroup parent when they are not (a shared-stack
 * context's create calls this before its own programs, whose drop paths count into the map). Two processes making
 * it at once: the one whose rx program has the higher id takes its programs out again.
 */
export function ensureCounters(host: Host): number {
  const existing = mapIfAny(host);
  if (existing !== undefined) return existing;
  const parent = contextsCgroupParent(host.config.cgroupParent);
  const map = createMap({
    name: COUNTER_MAP_NAME,
    type: MapType.LRU_PERCPU_HASH,
    keySize: COUNTER_KEY_SIZE,
    valueSize: COUNTER_VALUE_SIZE,
    maxEntries: MAX_ENTRIES,
  });
  const loaded: { direction: CounterDirection; fd: number }[] = [];
  try {
    for (const direction of ["rx", "tx"] as const)
      loaded.push({ direction, fd: loadProgram(counterProgram(map, direction)) });
    withFd(openCgroup(parent), (cg) => {
      const attached: typeof loaded = [];
      try {
        for (const p of loaded) {
          attachProgram(cg, p.fd, HOOKS[p.direction]);
          attached.push(p);
        }
      } catch (err) {
        for (const p of attached) detachProgram(cg, p.fd, HOOKS[p.direction]);
        throw err;
      }
    });
  } finally {
    for (const p of loaded) closeFd(p.fd);
    closeFd(map);
  }
  const found = mapIfAny(host);
  if (found === undefined)
    throw new NetctxError("internal", "traffic counters: the map attached is not found again");
  dropLosers(parent, found);
  return found;
}

/**
 * The map for the drop paths of the programs that refuse packets, made when missing; undefined where the kernel
 * refuses the counters (the programs then refuse without counting, as before).
 */
export function dropCountersIfAny(host: Host): number | undefined {
  try {
    return ensureCounters(host);
  } catch (err) {
    if (err instanceof KernelError) return undefined;
    throw err;
  }
}

/** The map when it is there, without making it (for comparisons, which must not change the kernel). */
export function knownDropCounters(host: Host): number | undefined {
  return mapIfAny(host);
}

/** Counter programs on the parent that use another map than `winner` (a racing process's) are detached. */
function dropLosers(parent: string, winner: number): void {
  const winnerId = mapInfo(winner).id;
  withFd(openCgroup(parent), (cg) => {
    for (const direction of ["rx", "tx"] as const)
      for (const id of queryPrograms(cg, HOOKS[direction])) {
        const fd = progFdById(id);
        try {
          const info = progInfo(fd);
          if (info.name === COUNTER_PROGRAM_NAMES[direction] && !info.mapIds.includes(winnerId))
            detachProgram(cg, fd, HOOKS[direction]);
        } finally {
          closeFd(fd);
        }
      }
  });
}

/**
 * The counter programs leave the contexts' cgroup parent (the bench's paths without counters; a parent that has no
 * shared-stack context left). Drop paths that count into the map keep it alive until their cgroups go.
 */
export function detachCounters(host: Host): void {
  const parent = contextsCgroupParentPath(host.config.cgroupParent);
  withFd(openCgroup(parent), (cg) => {
    for (const direction of ["rx", "tx"] as const)
      for (const id of queryPrograms(cg, HOOKS[direction])) {
        const fd = progFdById(id);
        try {
          if (progInfo(fd).name === COUNTER_PROGRAM_NAMES[direction]) detachProgram(cg, fd, HOOKS[direction]);
        } finally {
          closeFd(fd);
        }
      }
  });
  const known = host.cache(KNOWN);
  if (known.map !== undefined) closeFd(known.map);
  known.map = undefined;
}

/** What every cgroup counted, by cgroup id; empty when nothing counts yet (no shared-stack context was made). */
export function readCgroupCounters(host: Host): Map<bigint, CgroupCounts> {
  const map = mapIfAny(host);
  const out = new Map<bigint, CgroupCounts>();
  if (map === undefined) return out;
  cpus ??= possibleCpus();
  for (const [key, value] of mapEntriesBatch(map, COUNTER_KEY_SIZE, COUNTER_VALUE_SIZE * cpus)) {
    const id = new DataView(key.buffer, key.byteOffset, key.byteLength).getBigUint64(0, true);
    out.set(id, sumPerCpu(value, cpus));
  }
  return out;
}
