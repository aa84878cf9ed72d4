/** netctx serve: run the resident engine in the foreground (systemd: contrib/netctx.service). */
import { rmSync } from "node:fs";
import type { Command } from "commander";
import { serve } from "../api/server.ts";
import { gc } from "../engine/reconcile/gc.ts";
import { Host } from "../host.ts";
import { cliConfig } from "./config.ts";

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description(
      "run the resident engine: a local HTTP API on a root-only unix socket, used by the CLI and CNI",
    )
    .option("--socket <path>", "unix socket path (default: netctx.sock in the state dir)")
    .action(async (o: { socket?: string }) => {
      const config = cliConfig({ socketPath: o.socket });
      const { socketPath } = config;
      const host = Host.open(config);
      // Whatever a crashed run left half-done is finished or undone before the first request.
      const report = gc(host);
      for (const a of report.actions)
        console.log(`gc: ${a.action} ${a.object} (${a.reason})${a.error ? `: ${a.error}` : ""}`);
      const server = await serve(host, socketPath, (line) => console.log(line));
      console.log(`netctx engine (pid ${process.pid}) serving on ${socketPath}`);
      await new Promise<void>((resolve) => {
        const stop = () => server.close(() => resolve());
        process.once("SIGTERM", stop);
        process.once("SIGINT", stop);
      });
      rmSync(socketPath, { force: true });
      host.close();
    });
}
