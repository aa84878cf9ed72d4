/**
 * Rates as tc writes them (`10mbit`, `500kbit`) and the CLI's `--bandwidth RATE[/RATE]`. Apart from publish.ts
 * (zod) so the CLI's fast path (cli/fast-path.ts) parses `create --bandwidth` without loading the schemas.
 */
import { invalid } from "../errors.ts";
import type { Bandwidth } from "./publish.ts";

const UNITS: Record<string, number> = {
  bit: 1,
  kbit: 1e3,
  mbit: 1e6,
  gbit: 1e9,
  tbit: 1e12,
  bps: 8,
  kbps: 8e3,
  mbps: 8e6,
  gbps: 8e9,
};

/** tc's rate syntax (`10mbit`, `500kbit`, `1gbit`, `2mbps` = bytes); a bare number is bits per second. */
export function parseRate(text: string, field = "bandwidth"): number {
  const m = text
    .trim()
    .toLowerCase()
    .match(/^([0-9]+(?:\.[0-9]+)?)([a-z]*)$/);
  const unit = m ? (m[2] === "" ? 1 : UNITS[m[2]!]) : undefined;
  if (!m || unit === undefined)
    throw invalid(field, `"${text.slice(0, 40)}" is not a rate (e.g. 10mbit, 500kbit, 1gbit)`);
  const bits = Math.round(Number(m[1]) * unit);
  if (bits < 8000) throw invalid(field, `"${text}" is below 8kbit`);
  if (bits > 2 ** 32 * 8) throw invalid(field, `"${text}" is above ${(2 ** 32 * 8) / 1e9} gbit`);
  return bits;
}

/** `RATE` (both directions) or `IN/OUT` as the CLI takes it; "-" or empty leaves a direction unlimited. */
export function parseBandwidthArg(text: string, field = "bandwidth"): Bandwidth {
  const parts = text.split("/");
  const [inText, outText, extra] = parts.length === 1 ? [text, text] : parts;
  if (extra !== undefined) throw invalid(field, `"${text}" is not RATE[/RATE] (ingress/egress)`);
  const out: Bandwidth = {};
  if (inText && inText !== "-") out.ingressRate = parseRate(inText, field);
  if (outText && outText !== "-") out.egressRate = parseRate(outText, field);
  if (out.ingressRate === undefined && out.egressRate === undefined)
    throw invalid(field, `"${text}" sets no rate`);
  return out;
}
