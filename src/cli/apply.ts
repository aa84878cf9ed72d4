/** netctx apply FILE [--prune] | netctx destroy FILE: declarative scenes in YAML or JSON. */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import {
  applyScene,
  destroyScene,
  type Plan,
  planDestroy,
  planScene,
  rehearsePlan,
  type Step,
} from "../engine/apply.ts";
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
  switch (step.op) {
    case "replace-context":
    case "replace-network":
      return `${what} ${step.name} (${step.why} differs)`;
    case "remove-context":
    case "remove-network":
      return `${what} ${step.name} (${step.why})`;
    default:
      return `${what} ${step.name}`;
  }
}

/** A dry run's output: the notes, then each step. */
function printPlan(plan: Plan): void {
  for (const note of plan.notes) console.log(`note: ${note}`);
  for (const step of plan.steps) console.log(describe(step));
  if (plan.steps.length === 0) console.log("nothing to do: the host matches the file");
}

/** Before any change: what the apply will remove, and what it leaves alone because another made it. */
function announce(plan: Plan): void {
  for (const note of plan.notes) console.log(`note: ${note}`);
  const removals = plan.steps.filter((s) => s.op === "remove-context" || s.op === "remove-network");
  if (removals.length)
    console.log(
      `scene "${plan.scene}" will remove: ${removals.map((s) => `${s.op.slice("remove-".length)} ${s.name}`).join(", ")}`,
    );
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
      const cliProgress = process.stdout.isTTY === true ? (await import("cli-progress")).default : undefined;
      const opts = { prune: o.prune ?? false, source: resolve(file) };
      withHost((host) => {
        if (o.dryRun) {
          // The real apply's planning and rehearsal, without its kernel work: it refuses what apply would.
          const plan = planScene(host, scene, opts);
          rehearsePlan(host, plan);
          printPlan(plan);
          return;
        }
        const bar = cliProgress
          ? new cliProgress.SingleBar(
              { format: "{bar} {value}/{total} {step}" },
              cliProgress.Presets.shades_classic,
            )
          : undefined;
        let started = false;
        const plan = applyScene(host, scene, {
          ...opts,
          planned: announce,
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
        if (plan.steps.length === 0) console.log("nothing to do: the host matches the file");
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
      const opts = { source: resolve(file) };
      withHost((host) => {
        if (o.dryRun) {
          const plan = planDestroy(host, scene, opts);
          rehearsePlan(host, plan);
          printPlan(plan);
          return;
        }
        const plan = destroyScene(host, scene, { ...opts, planned: announce });
        for (const step of plan.steps) console.log(`removed ${step.op.slice("remove-".length)} ${step.name}`);
        if (plan.steps.length === 0)
          console.log(`nothing to do: scene "${plan.scene}" has made nothing here`);
      });
    });
}
