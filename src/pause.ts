/**
 * Pause points for crash tests: with NETCTX_PAUSE_AT=step[,step...] (or "*") the process announces the step on
 * stderr ("netctx-pause: STEP") and stops itself with SIGSTOP, so a test can SIGKILL it at exactly that point
 * inside kernel work. The steps come from the Host's config (config.ts reads the variable); without it a pause
 * point costs one comparison.
 */
import { writeSync } from "node:fs";

export const PAUSE_ENV = "NETCTX_PAUSE_AT";
export const PAUSE_MARK = "netctx-pause: ";

export function pausePoint(steps: ReadonlySet<string> | undefined, step: string): void {
  if (steps === undefined) return;
  if (!steps.has(step) && !steps.has("*")) return;
  // A synchronous write: the test must see the mark before the process stops.
  writeSync(2, `${PAUSE_MARK}${step}\n`);
  process.kill(process.pid, "SIGSTOP");
}
