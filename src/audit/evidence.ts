/** What a probe reports for one call, what an escape comes to, and how both read as evidence. */
import type { EscapeProbe } from "./expected.ts";

/** One call made inside a context: what was called, whether it worked, the errno or value it gave. */
export interface Call {
  call: string;
  ok: boolean;
  errno?: string;
  value?: string;
}

/**
 * "inconclusive": the probe could not show either way (its target was gone, its control failed, a call failed for
 * a reason that is not a refusal). A promised escape that is inconclusive fails the audit like a possible one:
 * a broken probe must never read as a held promise.
 */
export type EscapeVerdict = "blocked" | "possible" | "inconclusive";

export interface EscapeOutcome {
  probe: EscapeProbe;
  result: EscapeVerdict;
  evidence: string;
}

export function callText(c: Call): string {
  return c.ok
    ? `ok${c.value ? ` (${c.value})` : ""}`
    : `${c.errno ?? "failed"}${c.value ? ` (${c.value})` : ""}`;
}

/** "call: result", the form every escape's evidence takes. */
export function said(c: Call): string {
  return `${c.call}: ${callText(c)}`;
}

export function short(text: string): string {
  const one = text.replace(/\s+/g, " ");
  return one.length > 160 ? `${one.slice(0, 157)}...` : one;
}
