/**
 * `netctx apply FILE` and `netctx destroy FILE` as one call that says what it does in lines: the CLI runs it in its
 * own process when no engine runs, the engine runs it (POST /v1/apply) when one does, and either way the user reads
 * the same lines. Through an engine that is a cluster member, an apply that needs an address block of an overlay
 * network (issue 18) leases one in etcd and runs again (OverlayEngine.withBlocks): the failed try changed nothing
 * (the rehearsal refuses before any change; a later failure is undone), so only the last try's lines are told.
 */
import { NetctxError } from "../errors.ts";
import type { Host } from "../host.ts";
import { BlockNeeded } from "../state/ipam.ts";
import {
  applyScene,
  destroyScene,
  type Plan,
  planDestroy,
  planScene,
  rehearsePlan,
  type Step,
} from "./apply.ts";

export interface ApplyRequest {
  /** The parsed scene file. */
  scene: unknown;
  /** apply (the default) or destroy. */
  op?: "apply" | "destroy";
  prune?: boolean;
  /** The file's absolute path: the scene's name when it has none. */
  source?: string;
  dryRun?: boolean;
}

export interface ApplyOutcome {
  lines: string[];
  /** Set when the apply failed: what it had said so far stays in `lines`. */
  error?: { code: string; message: string; field?: string };
}

/** How the engine leases blocks: runs make again once a block is leased (OverlayEngine.withBlocks). */
export type BlockLeaser = <T>(make: () => T) => Promise<T>;

export function describeStep(step: Step): string {
  const what = step.op.replace("-", " ");
  switch (step.op) {
    case "replace-context":
    case "replace-network":
    case "replace-policy":
      return `${what} ${step.name} (${step.why} differs)`;
    case "remove-context":
    case "remove-network":
    case "remove-policy":
      return `${what} ${step.name} (${step.why})`;
    default:
      return `${what} ${step.name}`;
  }
}

/** A dry run's output: the notes, then each step. */
function planLines(plan: Plan, say: (line: string) => void): void {
  for (const note of plan.notes) say(`note: ${note}`);
  for (const step of plan.steps) say(describeStep(step));
  if (plan.steps.length === 0) say("nothing to do: the host matches the file");
}

/** Before any change: what the apply will remove, and what it leaves alone because another made it. */
function announceLines(plan: Plan, say: (line: string) => void): void {
  for (const note of plan.notes) say(`note: ${note}`);
  const removals = plan.steps.filter(
    (s) => s.op === "remove-context" || s.op === "remove-network" || s.op === "remove-policy",
  );
  if (removals.length)
    say(
      `scene "${plan.scene}" will remove: ${removals.map((s) => `${s.op.slice("remove-".length)} ${s.name}`).join(", ")}`,
    );
}

export interface RunOptions {
  say: (line: string) => void;
  /** Progress of a real apply (without it, `[done/total] step` lines) or destroy (without it, none). */
  progress?: (done: number, total: number, step: Step) => void;
  /**
   * Set when blocks can be leased (an engine that is a cluster member): a dry run that meets a network whose blocks
   * here have no room says the apply would lease one, instead of refusing as an apply without an engine would.
   */
  leases?: boolean;
}

/** One try of the request, synchronous: what the CLI does in its own process, and each try of the engine. */
export function runApply(host: Host, req: ApplyRequest, o: RunOptions): void {
  const opts = { prune: req.prune ?? false, ...(req.source !== undefined ? { source: req.source } : {}) };
  const destroy = req.op === "destroy";
  if (req.dryRun) {
    // The real apply's planning and rehearsal, without its kernel work: it refuses what apply would.
    const plan = destroy ? planDestroy(host, req.scene, opts) : planScene(host, req.scene, opts);
    try {
      rehearsePlan(host, plan);
    } catch (err) {
      if (!(o.leases && err instanceof BlockNeeded)) throw err;
      plan.notes.push(
        `this node has no room in its address blocks of ${err.subnet} (network ${err.network}): apply leases one in etcd; the steps after that are rehearsed only then`,
      );
    }
    planLines(plan, o.say);
    return;
  }
  if (destroy) {
    const plan = destroyScene(host, req.scene, {
      ...opts,
      planned: (p) => announceLines(p, o.say),
      ...(o.progress ? { progress: o.progress } : {}),
    });
    for (const step of plan.steps) o.say(`removed ${step.op.slice("remove-".length)} ${step.name}`);
    if (plan.steps.length === 0) o.say(`nothing to do: scene "${plan.scene}" has made nothing here`);
    return;
  }
  const plan = applyScene(host, req.scene, {
    ...opts,
    planned: (p) => announceLines(p, o.say),
    progress: o.progress ?? ((done, total, step) => o.say(`[${done}/${total}] ${describeStep(step)}`)),
  });
  if (plan.steps.length === 0) o.say("nothing to do: the host matches the file");
}

function outcomeOf(lines: string[], err: unknown): ApplyOutcome {
  const error =
    err instanceof NetctxError
      ? { code: err.code, message: err.message, ...(err.field !== undefined ? { field: err.field } : {}) }
      : { code: "internal", message: err instanceof Error ? err.message : String(err) };
  return { lines, error };
}

/** The engine's POST /v1/apply on an engine that leases no blocks: its lines, and its error, as one answer. */
export function engineApplySync(host: Host, req: ApplyRequest): ApplyOutcome {
  const lines: string[] = [];
  try {
    runApply(host, req, { say: (l) => lines.push(l) });
    return { lines };
  } catch (err) {
    return outcomeOf(lines, err);
  }
}

/**
 * The engine's POST /v1/apply on a cluster member: the request run through `leaser`, which leases a block and runs
 * it again when it needs one; the lines of the last try, and its error, as one answer, so the CLI prints what an
 * apply in its own process would have printed, then the error.
 */
export async function engineApply(host: Host, req: ApplyRequest, leaser: BlockLeaser): Promise<ApplyOutcome> {
  let lines: string[] = [];
  try {
    await leaser(() => {
      lines = [];
      runApply(host, req, { say: (l) => lines.push(l), leases: true });
    });
    return { lines };
  } catch (err) {
    return outcomeOf(lines, err);
  }
}
