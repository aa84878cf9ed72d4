/**
 * Pause points for crash tests: with NETCTX_PAUSE_AT=step[,step...] (or "*") the process announces the step on
 * stderr ("netctx-pause: STEP") and stops itself with SIGSTOP, so a test can SIGKILL it at exactly that point
 * inside kernel work. The steps come from the Host's config (config.ts reads the variable); without it a pause
 * point costs one comparison.
 * With NETCTX_FAIL_AT=step[,step...] the same points throw instead (an injected failure), so a test can watch the
 * in-process undo of a command that fails at exactly that point, which a SIGKILL never reaches.
 */
import { writeSync } from "node:fs";
import { NetctxError } from "./errors.ts";

export const PAUSE_ENV = "NETCTX_PAUSE_AT";
export const PAUSE_MARK = "netctx-pause: ";
export const FAIL_ENV = "NETCTX_FAIL_AT";
export const FAIL_MESSAGE = "injected failure at ";

export function pausePoint(steps: ReadonlySet<string> | undefined, step: string): void {
  if (steps === undefined) return;
  if (!steps.has(step) && !steps.has("*")) return;
  // A synchronous write: the test must see the mark before the process stops.
  writeSync(2, `${PAUSE_MARK}${step}\n`);
  process.kill(process.pid, "SIGSTOP");
}

/** Throws an injected failure when `steps` names this step (see the header). */
export function failPoint(steps: ReadonlySet<string> | undefined, step: string): void {
  if (steps?.has(step)) throw new NetctxError("internal", `${FAIL_MESSAGE}${step}`);
}
