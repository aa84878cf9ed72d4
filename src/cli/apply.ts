/** netctx apply FILE [--prune] | netctx destroy FILE: declarative scenes in YAML or JSON. */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { applyScene, destroyScene, planScene, type Step } from "../engine/apply.ts";
import { invalid } from "../errors.ts";
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

function describe(step: Step): string {
  const what = step.op.replace("-", " ");
  return step.op === "replace-context"
    ? `${what} ${step.name} (${step.why} differs)`
    : `${what} ${step.name}`;
}

export function registerApply(program: Command): void {
  program
    .command("apply")
    .description("create what the scene file declares and is missing; replace contexts that differ")
    .argument("<file>", "YAML or JSON: {networks: [...], contexts: [...]}")
    .option("--prune", "also remove contexts and networks the file does not declare")
    .option("--dry-run", "print the plan without changing anything")
    .action(async (file: string, o: { prune?: boolean; dryRun?: boolean }) => {
      const scene = await readSceneFile(file);
      const cliProgress = process.stdout.isTTY === true ? (await import("cli-progress")).default : undefined;
      withHost((host) => {
        if (o.dryRun) {
          for (const step of planScene(host, scene, o.prune ?? false)) console.log(describe(step));
          return;
        }
        const bar = cliProgress
          ? new cliProgress.SingleBar(
              { format: "{bar} {value}/{total} {step}" },
              cliProgress.Presets.shades_classic,
            )
          : undefined;
        let started = false;
        const steps = applyScene(host, scene, {
          prune: o.prune ?? false,
          progress: (done, total, step) => {
            if (bar && !started) {
              bar.start(total, 0, { step: "" });
              started = true;
            }
            if (bar) bar.update(done, { step: describe(step) });
            else console.log(`[${done}/${total}] ${describe(step)}`);
          },
        });
        bar?.stop();
        if (steps.length === 0) console.log("nothing to do: the host matches the file");
      });
    });

  program
    .command("destroy")
    .description("remove the contexts and networks a scene file declares")
    .argument("<file>")
    .action(async (file: string) => {
      const scene = await readSceneFile(file);
      withHost((host) => {
        for (const line of destroyScene(host, scene)) console.log(`removed ${line}`);
      });
    });
}
