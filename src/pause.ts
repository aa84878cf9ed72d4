/**
 * Pause points for crash tests: with NETCTX_PAUSE_AT=step[,step...] (or "*") the process announces the step on
 * stderr ("netctx-pause: STEP") and stops itself with SIGSTOP, so a test can SIGKILL it at exactly that point
 * inside kernel work. Without the variable a pause point costs one environment lookup.
 */
import { writeSync } from "node:fs";

export const PAUSE_ENV = "NETCTX_PAUSE_AT";
export const PAUSE_MARK = "netctx-pause: ";

let steps: Set<string> | undefined;

export function pausePoint(step: string): void {
  const wanted = process.env[PAUSE_ENV];
  if (!wanted) return;
  steps ??= new Set(wanted.split(",").map((s) => s.trim()));
  if (!steps.has(step) && !steps.has("*")) return;
  // A synchronous write: the test must see the mark before the process stops.
  writeSync(2, `${PAUSE_MARK}${step}\n`);
  process.kill(process.pid, "SIGSTOP");
}
