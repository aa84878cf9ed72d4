/** Re-run the current netctx command inside a throwaway host namespace with a throwaway state dir. */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Env } from "../config.ts";
import { sandboxArgv } from "../sandbox.ts";

/** `env`: the environment of this process (the CLI passes it), which the re-run inherits. */
export function rerunInSandbox(env: Env): number {
  const stateDir = mkdtempSync(join(tmpdir(), "netctx-demo-"));
  try {
    const argv = sandboxArgv([process.execPath, ...process.execArgv, ...process.argv.slice(1)]);
    const result = spawnSync(argv[0]!, argv.slice(1), {
      stdio: "inherit",
      env: { ...env, NETCTX_STATE_DIR: stateDir },
    });
    if (result.error) throw result.error;
    return result.status ?? 1;
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
}
