/**
 * socket and l3 contexts on a `host` network: setup and teardown per context at a population of N contexts of the
 * same level, through the apply path. Their cgroups go under NETCTX_CGROUP_PARENT (bench/run.ts sets a parent of
 * its own and removes it).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetwork, removeNetwork } from "../src/engine/networks.ts";
import { Host } from "../src/host.ts";
import { applyPath } from "./l2-lifecycle.ts";
import { type KernelMemory, type KernelReading, kernelMemory } from "./memory.ts";
import { type WalkResult, walk } from "./population.ts";

export interface SharedStackSection {
  walk: WalkResult;
  kernel: KernelReading;
}

export const SHARED_LABELS = {
  socket: "netctx socket context (apply)",
  l3: "netctx l3 context (apply)",
} as const;

const NETWORK = { name: "benchhost", driver: "host", subnets: ["10.210.0.0/16"] };

export function sharedStackWalk(
  level: "socket" | "l3",
  ns: number[],
  k: number,
  log: (line: string) => void,
): SharedStackSection {
  const stateDir = mkdtempSync(join(tmpdir(), "netctx-bench-"));
  const host = Host.open(stateDir);
  try {
    createNetwork(host, NETWORK);
    const path = applyPath(host, SHARED_LABELS[level], level === "socket" ? "s" : "t", level, NETWORK.name);
    const maxN = Math.max(...ns);
    const before: KernelMemory = kernelMemory();
    let atN: KernelMemory | undefined;
    const result = walk(
      path,
      ns.map((n) => ({ n, paths: [{ path, k }] })),
      {
        log,
        atFull(n) {
          if (n === maxN) atN = kernelMemory();
        },
      },
    );
    removeNetwork(host, NETWORK.name);
    return { walk: result, kernel: { n: maxN, before, ...(atN ? { atN } : {}) } };
  } finally {
    host.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
}
