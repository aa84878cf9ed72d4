/** Re-run the current netctx command inside a throwaway host namespace with a throwaway state dir. */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sandboxArgv } from "../sandbox.ts";

export function rerunInSandbox(): number {
  const stateDir = mkdtempSync(join(tmpdir(), "netctx-demo-"));
  try {
    const argv = sandboxArgv([process.execPath, ...process.execArgv, ...process.argv.slice(1)]);
    const result = spawnSync(argv[0]!, argv.slice(1), {
      stdio: "inherit",
      env: { ...process.env, NETCTX_STATE_DIR: stateDir },
    });
    if (result.error) throw result.error;
    return result.status ?? 1;
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
}
