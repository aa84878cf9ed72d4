/**
 * Contexts through the apply path on a network of their own, one walk per kind: socket and l3 contexts on a `host`
 * network, and l2 contexts on a routed network (no bridge: an l2 context without the kernel bridge's per-port
 * work). Setup and teardown per context at a population of N contexts of the same kind. Cgroups go under
 * NETCTX_CGROUP_PARENT (bench/run.ts sets a parent of its own and removes it).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readConfig } from "../src/config.ts";
import { createNetwork, removeNetwork } from "../src/engine/networks.ts";
import { Host } from "../src/host.ts";
import { applyPath, type Level } from "./l2-lifecycle.ts";
import { type KernelMemory, type KernelReading, kernelMemory } from "./memory.ts";
import { type WalkResult, walk } from "./population.ts";

export interface ApplyWalkSection {
  walk: WalkResult;
  kernel: KernelReading;
}

const HOST_NETWORK = { name: "benchhost", driver: "host", subnets: ["10.210.0.0/16"] };

export const APPLY_WALKS = {
  socket: { label: "netctx socket context (apply)", level: "socket", prefix: "s", network: HOST_NETWORK },
  l3: { label: "netctx l3 context (apply)", level: "l3", prefix: "t", network: HOST_NETWORK },
  routed: {
    label: "netctx library (apply), routed network",
    level: "l2",
    prefix: "r",
    network: { name: "benchrt", driver: "routed", subnets: ["10.211.0.0/16"], nat: true },
  },
} as const satisfies Record<string, { label: string; level: Level; prefix: string; network: object }>;
export type ApplyWalkId = keyof typeof APPLY_WALKS;

export function applyWalk(
  id: ApplyWalkId,
  ns: number[],
  k: number,
  log: (line: string) => void,
): ApplyWalkSection {
  const kind = APPLY_WALKS[id];
  const stateDir = mkdtempSync(join(tmpdir(), "netctx-bench-"));
  const host = Host.open(readConfig(process.env, { stateDir }));
  try {
    createNetwork(host, kind.network);
    const path = applyPath(host, kind.label, kind.prefix, kind.level, kind.network.name);
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
    removeNetwork(host, kind.network.name);
    return { walk: result, kernel: { n: maxN, before, ...(atN ? { atN } : {}) } };
  } finally {
    host.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
}
