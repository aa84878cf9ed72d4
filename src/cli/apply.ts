/** netctx apply FILE [--prune] | netctx destroy FILE: declarative scenes in YAML or JSON. */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import { callEngine } from "../api/client.ts";
import type { Step } from "../engine/apply.ts";
import { type ApplyOutcome, type ApplyRequest, describeStep, runApply } from "../engine/apply-run.ts";
import { type ErrorCode, invalid, NetctxError } from "../errors.ts";
import { cliConfig } from "./config.ts";
import { withHost } from "./host.ts";

/**
 * YAML 1.2 is a superset of JSON, so one parser reads both; its errors carry line and column. Loaded on use: every
 * other command would pay ~70 ms to initialise it.
 */
export async function readSceneFile(path: string): Promise<unknown> {
  const { parseDocument } = await import("yaml");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw invalid("file", `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const doc = parseDocument(text, { uniqueKeys: true });
  const problem = doc.errors[0];
  if (problem) throw invalid("file", `${path}: ${problem.message.split("\n")[0]}`);
  return doc.toJS();
}

/** An engine runs: the apply runs there (one writer; on an overlay network it may lease a block), lines come back. */
async function throughEngine(req: ApplyRequest): Promise<boolean> {
  const out = await callEngine<ApplyOutcome>(cliConfig().socketPath, "POST", "/v1/apply", req);
  if (!out) return false;
  for (const line of out.lines) console.log(line);
  if (out.error) throw new NetctxError(out.error.code as ErrorCode, out.error.message, out.error.field);
  return true;
}

export function registerApply(program: Command): void {
  program
    .command("apply")
    .description("create what the scene file declares and is missing; replace contexts that differ")
    .argument("<file>", "YAML or JSON: {networks: [...], contexts: [...]}")
    .option(
      "--prune",
      "also remove the contexts and networks an earlier apply of this scene made that the file no longer declares",
    )
    .option("--dry-run", "check the file as apply does and print the plan, changing nothing")
    .action(async (file: string, o: { prune?: boolean; dryRun?: boolean }) => {
      const scene = await readSceneFile(file);
      const req: ApplyRequest = {
        scene,
        prune: o.prune ?? false,
        source: resolve(file),
        ...(o.dryRun ? { dryRun: true } : {}),
      };
      if (await throughEngine(req)) return;
      const cliProgress = process.stdout.isTTY === true ? (await import("cli-progress")).default : undefined;
      withHost((host) => {
        const bar = cliProgress
          ? new cliProgress.SingleBar(
              { format: "{bar} {value}/{total} {step}" },
              cliProgress.Presets.shades_classic,
            )
          : undefined;
        let started = false;
        const progress = bar
          ? (done: number, total: number, step: Step) => {
              if (!started) {
                bar.start(total, 0, { step: "" });
                started = true;
              }
              bar.update(done, { step: describeStep(step) });
            }
          : undefined;
        try {
          runApply(host, req, { say: (l) => console.log(l), ...(progress ? { progress } : {}) });
        } finally {
          bar?.stop();
        }
      });
    });

  program
    .command("destroy")
    .description(
      "remove the contexts and networks this scene made (never those made by hand or by another scene)",
    )
    .argument("<file>")
    .option("--dry-run", "print what destroy would remove, changing nothing")
    .action(async (file: string, o: { dryRun?: boolean }) => {
      const scene = await readSceneFile(file);
      const req: ApplyRequest = {
        scene,
        op: "destroy",
        source: resolve(file),
        ...(o.dryRun ? { dryRun: true } : {}),
      };
      if (await throughEngine(req)) return;
      withHost((host) => runApply(host, req, { say: (l) => console.log(l) }));
    });
}
