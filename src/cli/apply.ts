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
import { printJson } from "./output.ts";
import { startProgress } from "./progress.ts";

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

/**
 * What apply and destroy tell: their lines as they come, or with --json the engine's own answer
 * (`{"lines": [...], "error": {...}}`) once they are done; a failure is still the one error line on stderr.
 */
function outcomePrinter(json: boolean | undefined) {
  const lines: string[] = [];
  return {
    say: (line: string) => (json ? lines.push(line) : console.log(line)),
    /** Runs the whole apply; its outcome printed as JSON at the end with --json. */
    async run(fn: () => Promise<void> | void): Promise<void> {
      try {
        await fn();
      } catch (err) {
        if (json) printJson({ lines, error: errorBody(err) } satisfies ApplyOutcome);
        throw err;
      }
      if (json) printJson({ lines } satisfies ApplyOutcome);
    },
  };
}

function errorBody(err: unknown): NonNullable<ApplyOutcome["error"]> {
  if (err instanceof NetctxError)
    return { code: err.code, message: err.message, ...(err.field !== undefined ? { field: err.field } : {}) };
  return { code: "internal", message: err instanceof Error ? err.message : String(err) };
}

/** An engine runs: the apply runs there (one writer; on an overlay network it may lease a block), lines come back. */
async function throughEngine(req: ApplyRequest, say: (line: string) => void): Promise<boolean> {
  const out = await callEngine<ApplyOutcome>(cliConfig().socketPath, "POST", "/v1/apply", req);
  if (!out) return false;
  for (const line of out.lines) say(line);
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
    .option("--json", 'print {"lines": [...]} (and "error" when it failed) once done, no progress')
    .action(async (file: string, o: { prune?: boolean; dryRun?: boolean; json?: boolean }) => {
      const out = outcomePrinter(o.json);
      const scene = await readSceneFile(file);
      const req: ApplyRequest = {
        scene,
        prune: o.prune ?? false,
        source: resolve(file),
        ...(o.dryRun ? { dryRun: true } : {}),
      };
      await out.run(async () => {
        if (await throughEngine(req, out.say)) return;
        const cliProgress =
          process.stdout.isTTY === true && !o.json ? (await import("cli-progress")).default : undefined;
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
            runApply(host, req, { say: out.say, ...(progress ? { progress } : {}) });
          } finally {
            bar?.stop();
          }
        });
      });
    });

  program
    .command("destroy")
    .description(
      "remove the contexts and networks this scene made (never those made by hand or by another scene)",
    )
    .argument("<file>")
    .option("--dry-run", "print what destroy would remove, changing nothing")
    .option("--json", 'print {"lines": [...]} (and "error" when it failed) once done')
    .action(async (file: string, o: { dryRun?: boolean; json?: boolean }) => {
      const out = outcomePrinter(o.json);
      const scene = await readSceneFile(file);
      const req: ApplyRequest = {
        scene,
        op: "destroy",
        source: resolve(file),
        ...(o.dryRun ? { dryRun: true } : {}),
      };
      await out.run(async () => {
        if (await throughEngine(req, out.say)) return;
        // Through an engine the lines come at the end; here, each removal is a step past 2 s.
        const progress = await startProgress("destroy", o.json);
        try {
          withHost((host) =>
            runApply(host, req, {
              say: out.say,
              progress: (done, total, step) => progress.step(done, total, describeStep(step)),
            }),
          );
        } finally {
          progress.stop();
        }
      });
    });
}
