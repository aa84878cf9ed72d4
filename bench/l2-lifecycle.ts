/** l2 context setup and teardown per context: netctx as a library, netctx as one CLI process per operation. */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createContext, removeContext } from "../src/engine/contexts.ts";
import { createNetwork, removeNetwork } from "../src/engine/networks.ts";
import { Host } from "../src/host.ts";
import { type Stats, stats, time } from "./stats.ts";

export interface LifecycleResult {
  label: string;
  n: number;
  setup: Stats;
  teardown: Stats;
  both: Stats;
}

const NETWORK = { name: "benchnet", driver: "bridge", subnets: ["10.200.0.0/16"], nat: true };

function withStateDir<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), "netctx-bench-"));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function result(label: string, setup: number[], teardown: number[]): LifecycleResult {
  return {
    label,
    n: setup.length,
    setup: stats(setup),
    teardown: stats(teardown),
    both: stats(setup.map((s, i) => s + teardown[i]!)),
  };
}

export function libraryLifecycle(n: number): LifecycleResult {
  return withStateDir((dir) => {
    const host = Host.open(dir);
    try {
      createNetwork(host, NETWORK);
      const names = Array.from({ length: n }, (_, i) => `b${i}`);
      const setup = names.map((name) =>
        time(() => createContext(host, { name, level: "l2", networks: ["benchnet"] })),
      );
      const teardown = names.map((name) => time(() => removeContext(host, name)));
      removeNetwork(host, NETWORK.name);
      return result("netctx library", setup, teardown);
    } finally {
      host.close();
    }
  });
}

export function cliLifecycle(n: number): LifecycleResult {
  return withStateDir((dir) => {
    const bin = join(import.meta.dirname, "..", "bin", "netctx");
    const env = { ...process.env, NETCTX_STATE_DIR: dir };
    const run = (...args: string[]) => {
      const r = spawnSync(bin, args, { env, encoding: "utf8" });
      if (r.status !== 0) throw new Error(`netctx ${args.join(" ")}: ${r.stderr}`);
    };
    run("network", "create", NETWORK.name, "--driver", "bridge", "--subnet", NETWORK.subnets[0]!, "--nat");
    const names = Array.from({ length: n }, (_, i) => `c${i}`);
    const setup = names.map((name) =>
      time(() => run("create", name, "--level", "l2", "--network", NETWORK.name)),
    );
    const teardown = names.map((name) => time(() => run("rm", name)));
    run("network", "rm", NETWORK.name);
    return result("netctx CLI", setup, teardown);
  });
}
