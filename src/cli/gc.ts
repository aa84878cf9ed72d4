/** netctx gc | repair | state export: the reliability commands. */
import type { Command } from "commander";
import { type GcReport, gc, repair } from "../engine/reconcile/gc.ts";
import { exportState } from "../engine/state-export.ts";
import { withHost } from "./host.ts";
import { printJson } from "./output.ts";
import { startProgress } from "./progress.ts";

export function registerGc(program: Command): void {
  program
    .command("gc")
    .description("converge state and kernel: finish or undo crashed operations, remove what no record owns")
    .option("--dry-run", "list the actions without doing them")
    .option("--json", "JSON output")
    .action(async (o: { dryRun?: boolean; json?: boolean }) => {
      const progress = await startProgress("gc", o.json);
      let report: GcReport;
      try {
        report = withHost((host) => gc(host, { dryRun: o.dryRun ?? false, progress: progress.step }));
      } finally {
        progress.stop();
      }
      if (o.json) return printJson(report);
      for (const a of report.actions) {
        const line = `${a.action} ${a.object}: ${a.reason}`;
        console.log(a.error ? `${line} (failed: ${a.error})` : line);
      }
      for (const b of report.busy) console.log(`skip ${b}: another netctx process is working on it`);
      const failed = report.actions.filter((a) => a.error).length;
      if (failed) {
        process.stderr.write(`error: gc: ${failed} action(s) failed\n`);
        process.exitCode = 1;
      }
    });

  program
    .command("repair")
    .description("reinstall netctx's nft table and elements from state (other tables are not touched)")
    .option("--json", "JSON output")
    .action((o: { json?: boolean }) => {
      const diff = withHost((host) => repair(host));
      if (o.json) return printJson(diff);
      if (diff.rebuild) console.log("rebuilt this store's nft tables");
      for (const e of diff.remove) console.log(`removed ${e}`);
      for (const e of diff.add) console.log(`added ${e}`);
    });

  program
    .command("state")
    .description("the state store")
    .command("export")
    .description("print networks and contexts as JSON (restorable input)")
    .action(() => {
      printJson(withHost((host) => exportState(host.store)));
    });
}
