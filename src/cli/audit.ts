/** netctx audit [NAME...]: measure the isolation table live and try to escape; non-zero exit on a difference. */
import type { Command } from "commander";
import { runAudit } from "../audit/audit.ts";
import { auditJson, formatAudit, formatAuditMarkdown } from "../audit/report.ts";
import { Host } from "../host.ts";
import { cliConfig } from "./config.ts";
import { printJson } from "./output.ts";

export function registerAudit(program: Command): void {
  program
    .command("audit")
    .description(
      "measure what each context isolates (devices, routing tables, routing cache, sockets) and try escapes",
    )
    .argument("[name...]", "contexts to audit (default: all)")
    .option("--json", "JSON output")
    .option("--markdown", "markdown tables with the evidence")
    .action(async (names: string[], o: { json?: boolean; markdown?: boolean }) => {
      const host = Host.open(cliConfig());
      try {
        const report = await runAudit(host, names);
        if (o.json) printJson(auditJson(report));
        else if (o.markdown) process.stdout.write(`${formatAuditMarkdown(report)}\n`);
        else process.stdout.write(`${formatAudit(report)}\n`);
        process.exitCode = report.ok ? 0 : 2;
      } finally {
        host.close();
      }
    });
}
