/**
 * netctx's side of the walks: one state dir, one network, one population built through the apply path, and the
 * front ends measured at each N against that population (library/apply, CLI, CNI; with and without the resident
 * engine). All of them join the same network, so the population every one of them meets is the same.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readConfig } from "../src/config.ts";
import { applyScene } from "../src/engine/apply.ts";
import { removeContext } from "../src/engine/contexts.ts";
import { createNetwork, removeNetwork } from "../src/engine/networks.ts";
import { Host } from "../src/host.ts";
import { cliPath, type Engine, installCniPlugin, netctxCniPath, startEngine } from "./cni-netctx.ts";
import { type DatabaseSize, databaseSize, type KernelReading, kernelMemory, statusKb } from "./memory.ts";
import { type Cell, type Path, type WalkResult, walk } from "./population.ts";
import { nowMs } from "./stats.ts";

export type Level = "l2" | "l3" | "socket";

/**
 * Contexts through applyScene, k in one apply: it works in batches (one state transaction, one nft transaction per
 * batch), so each context's time is its share of the apply's wall time. Removal leaves anti-spoofing elements to a
 * batch (host.defer): settle() runs it.
 */
/** A batch of k costs k x 3-10 ms here: repeating it is cheap and gives the figures more than one sample. */
const APPLY_ROUNDS = 5;

export function applyPath(host: Host, label: string, prefix: string, level: Level, network: string): Path {
  const addMany = (indices: number[]) => {
    const t = nowMs();
    applyScene(host, {
      name: `bench ${prefix}`,
      contexts: indices.map((i) => ({ name: `${prefix}${i}`, level, networks: [network] })),
    });
    const share = (nowMs() - t) / indices.length;
    return indices.map(() => share);
  };
  return {
    label,
    addMany,
    rounds: APPLY_ROUNDS,
    add: (i) => {
      addMany([i]);
    },
    remove: (i) => {
      removeContext(host, `${prefix}${i}`);
    },
    settle: () => host.flushDeferred(),
  };
}

export const L2_PATHS = {
  library: "netctx library (apply)",
  cli: "netctx CLI, no engine",
  cliEngine: "netctx CLI, engine running",
  cniEngine: "netctx CNI, engine running",
  cniExec: "netctx CNI, no engine",
} as const;
export type L2PathId = keyof typeof L2_PATHS;

export interface L2Cell {
  n: number;
  paths: { id: L2PathId; k: number }[];
}

/** Readings at the largest N, taken with exactly N contexts alive (after the library path's k setups). */
export interface L2Memory {
  kernel: KernelReading;
  dbBefore: DatabaseSize;
  dbAtN?: DatabaseSize;
  engineRssStartKb: number;
  /** After the CNI path's k setups at the largest N, with N contexts alive. */
  engineRssAtNKb?: number;
  engineHwmKb?: number;
}

export interface L2Section {
  walk: WalkResult;
  memory: L2Memory;
}

const NETWORK = { name: "benchnet", driver: "bridge", subnets: ["10.200.0.0/16"], nat: true };

export async function netctxL2Walk(cells: L2Cell[], log: (line: string) => void): Promise<L2Section> {
  const stateDir = mkdtempSync(join(tmpdir(), "netctx-bench-"));
  const pluginDir = join(stateDir, "cni-bin");
  mkdirSync(pluginDir);
  const host = Host.open(readConfig(process.env, { stateDir }));
  let engine: Engine | undefined;
  try {
    createNetwork(host, NETWORK);
    installCniPlugin(stateDir, pluginDir);
    engine = await startEngine(stateDir);
    const maxN = Math.max(...cells.map((c) => c.n));
    const memory: L2Memory = {
      kernel: { n: maxN, before: kernelMemory() },
      dbBefore: databaseSize(stateDir),
      engineRssStartKb: statusKb(engine.pid, "VmRSS"),
    };
    const paths: Record<L2PathId, Path> = {
      library: applyPath(host, L2_PATHS.library, "b", "l2", NETWORK.name),
      cli: cliPath(L2_PATHS.cli, "c", stateDir, NETWORK.name, false),
      cliEngine: cliPath(L2_PATHS.cliEngine, "e", stateDir, NETWORK.name, true),
      cniEngine: netctxCniPath(L2_PATHS.cniEngine, "ncres", pluginDir, NETWORK.name, true, stateDir),
      cniExec: netctxCniPath(L2_PATHS.cniExec, "ncexec", pluginDir, NETWORK.name, false, stateDir),
    };
    const walkCells: Cell[] = cells.map((c) => ({
      n: c.n,
      paths: c.paths.map((p) => ({ path: paths[p.id], k: p.k })),
    }));
    const pid = engine.pid;
    const result = walk(paths.library, walkCells, {
      log,
      atFull(n, label) {
        if (n !== maxN) return;
        if (label === L2_PATHS.library) {
          memory.kernel.atN = kernelMemory();
          memory.dbAtN = databaseSize(stateDir);
        }
        if (label === L2_PATHS.cniEngine) {
          memory.engineRssAtNKb = statusKb(pid, "VmRSS");
          memory.engineHwmKb = statusKb(pid, "VmHWM");
        }
      },
    });
    removeNetwork(host, NETWORK.name);
    return { walk: result, memory };
  } finally {
    await engine?.stop();
    host.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
}
