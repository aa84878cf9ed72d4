/** netctx as a CNI plugin, exec'd the way a runtime does: with and without the resident engine. */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cniLifecycle } from "./cni-peer.ts";
import type { LifecycleResult } from "./l2-lifecycle.ts";

const BIN = join(import.meta.dirname, "..", "bin", "netctx");

export async function netctxCniLifecycle(n: number, resident: boolean): Promise<LifecycleResult> {
  const stateDir = mkdtempSync(join(tmpdir(), "netctx-bench-cni-"));
  const env = { ...process.env, NETCTX_STATE_DIR: stateDir };
  const pluginDir = join(stateDir, "cni-bin");
  spawnSync(BIN, ["cni", "install", pluginDir], { env });
  const engine = resident ? spawn(BIN, ["serve"], { env, stdio: "ignore" }) : undefined;
  try {
    const socket = join(stateDir, "netctx.sock");
    while (engine && !existsSync(socket)) await new Promise((r) => setTimeout(r, 20));
    const conf = {
      cniVersion: "1.0.0",
      name: resident ? "ncres" : "ncexec",
      type: "netctx",
      subnets: [resident ? "10.204.0.0/16" : "10.205.0.0/16"],
      nat: true,
    };
    const label = resident ? "netctx CNI, engine running" : "netctx CNI, no engine";
    return cniLifecycle(label, n, () => conf, pluginDir);
  } finally {
    if (engine) {
      const exited = new Promise((r) => engine.once("exit", r));
      engine.kill("SIGTERM");
      await exited;
    }
    rmSync(stateDir, { recursive: true, force: true });
  }
}
