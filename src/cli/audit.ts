/**
 * netctx audit [NAME...]: measure the isolation table live and try to escape; with --reach, the reach matrix of the
 * policies instead. Non-zero exit on a difference.
 */
import type { Command } from "commander";
import { runAudit } from "../audit/audit.ts";
import { runReach } from "../audit/reach.ts";
import { formatReach, reachJson } from "../audit/reach-report.ts";
import { auditJson, formatAudit, formatAuditMarkdown } from "../audit/report.ts";
import { invalid } from "../errors.ts";
import { Host } from "../host.ts";
import { cliConfig } from "./config.ts";
import { printJson } from "./output.ts";
import { startProgress } from "./progress.ts";

interface AuditFlags {
  json?: boolean;
  markdown?: boolean;
  reach?: boolean;
  scene?: string;
}

export function registerAudit(program: Command): void {
  program
    .command("audit")
    .description(
      "measure what each context isolates (devices, routing tables, routing cache, sockets) and try escapes; --reach: who reaches whom against the policies",
    )
    .argument("[name...]", "contexts to audit (default: all)")
    .option("--json", "JSON output")
    .option("--markdown", "markdown tables with the evidence")
    .option(
      "--reach",
      "the reach matrix: probe every ordered pair of contexts, the host and the world on TCP and UDP",
    )
    .option("--scene <name>", "with --reach: only the contexts of this apply scene")
    .action(async (names: string[], o: AuditFlags) => {
      if (o.scene !== undefined && !o.reach) throw invalid("--scene", "only with --reach");
      if (o.reach && o.markdown) throw invalid("--markdown", "not with --reach (use --json)");
      const host = Host.open(cliConfig());
      const progress = await startProgress("audit", o.json);
      try {
        if (o.reach) {
          const report = await runReach(host, {
            names,
            ...(o.scene !== undefined ? { scene: o.scene } : {}),
          });
          if (o.json) printJson(reachJson(report));
          else process.stdout.write(`${formatReach(report)}\n`);
          process.exitCode = report.ok ? 0 : 2;
          return;
        }
        const report = await runAudit(host, names, { progress: progress.step });
        progress.stop();
        if (o.json) printJson(auditJson(report));
        else if (o.markdown) process.stdout.write(`${formatAuditMarkdown(report)}\n`);
        else process.stdout.write(`${formatAudit(report)}\n`);
        process.exitCode = report.ok ? 0 : 2;
      } finally {
        progress.stop();
        host.close();
      }
    });
}
