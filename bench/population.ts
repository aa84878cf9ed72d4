/**
 * Per-context cost at a population of N: fill up to N - k contexts the cheapest correct way (untimed), time k
 * setups (the population reaches N), then time the teardown of those k (back to N - k), and move on to the next
 * N from there. One population serves every N of a walk, so reaching N = 1000 costs 1000 fills, not 1600.
 */
import { type Stats, stats, time } from "./stats.ts";

/** Make and remove context number i. */
export interface Path {
  label: string;
  add(i: number): void;
  remove(i: number): void;
  /** Several adds in one call (the apply path); returns the time of each, in ms. */
  addMany?(indices: number[]): number[];
  /**
   * How many times the k adds and removals are repeated at each N (default 1). A batch path gives one figure per
   * batch, its wall time shared out: repeating the batch gives the median and p95 several samples to stand on.
   */
  rounds?: number;
  /**
   * Work the removals left for later (netctx defers kernel cleanup and batches it): timed after the k removals and
   * charged to them in equal shares, so deferring cannot hide a cost.
   */
  settle?(): void;
}

export interface Measured {
  label: string;
  n: number;
  k: number;
  /** Times the k adds and removals were repeated; setup and teardown hold k x rounds samples. */
  rounds: number;
  setup: Stats;
  teardown: Stats;
  both: Stats;
}

export interface Failure {
  label: string;
  n: number;
  error: string;
}

export interface Cell {
  n: number;
  paths: { path: Path; k: number }[];
}

export interface WalkResult {
  rows: Measured[];
  failures: Failure[];
}

export interface WalkHooks {
  /** After a path's k setups, before their teardown: the population is exactly n. */
  atFull?(n: number, label: string): void;
  log?(line: string): void;
  /** Each row as soon as it is measured (a time-boxed caller keeps what was done). */
  onRow?(row: Measured): void;
  /** Leave the population in place at the end: the caller drops the whole namespace instead. */
  keepPopulation?: boolean;
}

export function measured(
  label: string,
  n: number,
  setup: number[],
  teardown: number[],
  rounds = 1,
): Measured {
  return {
    label,
    n,
    k: setup.length / rounds,
    rounds,
    setup: stats(setup),
    teardown: stats(teardown),
    both: stats(setup.map((s, i) => s + teardown[i]!)),
  };
}

export function describe(r: Measured): string {
  return `${r.label.padEnd(34)} N=${String(r.n).padEnd(4)} k=${`${r.k}${r.rounds > 1 ? `x${r.rounds}` : ""}`.padEnd(3)} setup ${r.setup.median.toFixed(2)} ms (p95 ${r.setup.p95.toFixed(2)})  teardown ${r.teardown.median.toFixed(2)} ms (p95 ${r.teardown.p95.toFixed(2)})  both ${r.both.median.toFixed(2)} ms`;
}

function addAll(path: Path, indices: number[]): number[] {
  if (path.addMany) return path.addMany(indices);
  return indices.map((i) => time(() => path.add(i)));
}

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0]!.slice(0, 300);
}

/**
 * Walk the cells in ascending N. `fill` builds the population (indices 0..); a measured path uses indices
 * N-k..N-1, which the population does not hold at that moment. Everything is removed again at the end.
 */
export function walk(fill: Path, cells: Cell[], hooks: WalkHooks = {}): WalkResult {
  const rows: Measured[] = [];
  const failures: Failure[] = [];
  const log = hooks.log ?? (() => {});
  let population = 0;
  const resize = (target: number) => {
    const from = population;
    const t0 = performance.now();
    if (population < target) {
      const indices: number[] = [];
      for (let i = population; i < target; i++) indices.push(i);
      addAll(fill, indices);
      population = target;
    }
    while (population > target) fill.remove(--population);
    if (from !== target)
      log(`  population ${from} -> ${target} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  };
  try {
    for (const cell of [...cells].sort((a, b) => a.n - b.n)) {
      // Larger k first: each path after it only needs the population to grow.
      for (const { path, k } of [...cell.paths].sort((a, b) => b.k - a.k)) {
        const kk = Math.min(k, cell.n);
        resize(cell.n - kk);
        const indices = Array.from({ length: kk }, (_, j) => cell.n - kk + j);
        const made: number[] = [];
        try {
          const setup: number[] = [];
          const teardown: number[] = [];
          const rounds = path.rounds ?? 1;
          for (let round = 0; round < rounds; round++) {
            let times: number[];
            if (path.addMany) {
              times = path.addMany(indices);
              made.push(...indices);
            } else {
              times = indices.map((i) => {
                const t = time(() => path.add(i));
                made.push(i);
                return t;
              });
            }
            setup.push(...times);
            if (round === 0) hooks.atFull?.(cell.n, path.label);
            const removals = indices.map((i) => {
              const t = time(() => path.remove(i));
              made.splice(made.indexOf(i), 1);
              return t;
            });
            const settling = path.settle ? time(() => path.settle?.()) : 0;
            teardown.push(...removals.map((t) => t + settling / removals.length));
          }
          const row = measured(path.label, cell.n, setup, teardown, rounds);
          rows.push(row);
          log(describe(row));
          hooks.onRow?.(row);
        } catch (err) {
          failures.push({ label: path.label, n: cell.n, error: errorText(err) });
          log(`${path.label} N=${cell.n}: FAILED: ${errorText(err)}`);
          for (const i of made) {
            try {
              path.remove(i);
            } catch {
              // the section's own cleanup (or the throwaway namespace) takes what is left
            }
          }
        }
      }
    }
  } finally {
    if (!hooks.keepPopulation) resize(0);
  }
  return { rows, failures };
}
