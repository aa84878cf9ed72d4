/** Medians and tails of per-item timings, in milliseconds (or whatever unit the samples carry). */
export interface Stats {
  n: number;
  median: number;
  p95: number;
  total: number;
}

const round = (x: number) => Math.round(x * 1000) / 1000;

/** Nearest-rank quantiles: the p95 of 20 samples is the 19th smallest, of 7 the largest. */
export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] ?? 0;
  return {
    n: s.length,
    median: round(q(0.5)),
    p95: round(q(0.95)),
    total: round(s.reduce((a, b) => a + b, 0)),
  };
}

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export function time(fn: () => void): number {
  const t = nowMs();
  fn();
  return nowMs() - t;
}

/** a / b with 3 significant decimals, or undefined when either side is missing. */
export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined || b === undefined || b === 0) return undefined;
  return round(a / b);
}

/** A figure for a table cell: milliseconds keep 3 decimals below 10, fewer above. */
export function fmt(x: number | undefined, digits?: number): string {
  if (x === undefined || Number.isNaN(x)) return "n/a";
  const d = digits ?? (Math.abs(x) < 10 ? 3 : Math.abs(x) < 100 ? 2 : 1);
  return x.toFixed(d);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
