/** Medians and tails of per-item timings, in milliseconds. */
export interface Stats {
  n: number;
  median: number;
  p95: number;
  total: number;
}

export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] ?? 0;
  const round = (x: number) => Math.round(x * 1000) / 1000;
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
