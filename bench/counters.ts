/**
 * The Counters section (issue 21), inside the bench's throwaway host namespace:
 *  (a) what the shared-stack contexts' counter programs cost on the data path: iperf3 between two socket contexts and
 *      between two l3 contexts whose cgroup parent has the counter programs, against the same pairs under a parent
 *      whose counter programs were taken off, all in the same turns (bench/datapath.ts's method). A run's figure is
 *      counted / uncounted of that run; goal >= 0.98 (a cost of at most 2%);
 *  (b) what a Prometheus scrape costs the engine at 1000 contexts (300 l2 in --quick): the engine's /metrics work
 *      (api/metrics.ts: one reading of the counters and the text), timed in this process on the engine's own code,
 *      for 1000 socket contexts and for 1000 l2 contexts (each read inside its netns); goal <= 50 ms.
 * bench/stats-check.ts runs it alone.
 */
import { mkdtempSync, rmdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EngineMetrics } from "../src/api/metrics.ts";
import { readConfig } from "../src/config.ts";
import { createContext, removeContext } from "../src/engine/contexts.ts";
import { createNetwork, removeNetwork } from "../src/engine/networks.ts";
import { statsView } from "../src/engine/stats.ts";
import { contextExecArgv } from "../src/exec/enter.ts";
import { Host } from "../src/host.ts";
import { specOf } from "../src/levels/driver.ts";
import type { ContextRecord } from "../src/model/records.ts";
import { detachCounters } from "../src/networks/cgroup-counters.ts";
import { combinedRatio, measureInTurns, type Row } from "./datapath.ts";
import type { Verdict } from "./report.ts";
import { fmt, nowMs, stats } from "./stats.ts";

const PLAN = {
  quick: { runs: 3, turns: 50, population: { socket: 1000, l2: 300 }, scrapes: 10 },
  full: { runs: 6, turns: 160, population: { socket: 1000, l2: 1000 }, scrapes: 20 },
} as const;

const GOALS = {
  socket: "counters: data path, socket row with counters >= 0.98x without",
  l3: "counters: data path, l3 row with counters >= 0.98x without",
  scrape: "counters: a /metrics scrape at 1000 contexts costs the engine <= 50 ms",
} as const;

export interface CountersFigures {
  datapath?: Record<string, { counted?: number; uncounted?: number; ratio?: number; error?: number }>;
  scrape?: Record<
    string,
    { contexts: number; scrapeMs: number; p95Ms: number; readMs: number; bytes: number }
  >;
}

export interface CountersResult {
  text: string;
  verdicts: Verdict[];
  figures: CountersFigures;
}

/** A Host on a fresh state directory whose shared-stack contexts' cgroups go under `parent`. */
function scratchHost(tag: string, parent: string) {
  const stateDir = mkdtempSync(join(tmpdir(), `netctx-bench-cnt-${tag}-`));
  const host = Host.open(readConfig({ ...process.env, NETCTX_CGROUP_PARENT: parent }, { stateDir }));
  return {
    host,
    done: () => {
      host.close();
      rmSync(stateDir, { recursive: true, force: true });
      try {
        rmdirSync(parent);
      } catch {}
    },
  };
}

/** The bench's own cgroup parent: run.ts and section-alone.ts set NETCTX_CGROUP_PARENT and remove it afterwards. */
function benchParent(): string {
  const parent = process.env.NETCTX_CGROUP_PARENT;
  if (!parent)
    throw new Error(
      "NETCTX_CGROUP_PARENT is not set: run the section through bench/run.ts or stats-check.ts",
    );
  return parent;
}

/** (a) Two pairs per level, one under a parent with the counter programs and one under a parent without. */
async function measureDatapath(
  plan: (typeof PLAN)["quick" | "full"],
  log: (l: string) => void,
): Promise<NonNullable<CountersFigures["datapath"]>> {
  const counted = scratchHost("on", join(benchParent(), "counted"));
  const uncounted = scratchHost("off", join(benchParent(), "uncounted"));
  const made: [Host, string][] = [];
  const networks: [Host, string][] = [];
  let port = 5401;
  const pair = (host: Host, net: string, subnet: string, level: string): Row => {
    createNetwork(host, { name: net, driver: "host", subnets: [subnet] });
    networks.push([host, net]);
    const [a, b] = ["a", "b"].map((s) => {
      const r = createContext(host, { name: `${net}-${s}`, level, networks: [net] });
      made.push([host, r.name]);
      return r;
    }) as [ContextRecord, ContextRecord];
    const exec = (r: ContextRecord) => (cmd: string[]) => contextExecArgv(host, r, cmd);
    return {
      label: "",
      group: "shared",
      port: port++,
      addr: specOf(a).attachments[0]!.addresses[0]!.split("/")[0]!,
      server: exec(a),
      client: exec(b),
      runs: [],
      errors: [],
    };
  };
  try {
    const rows: Row[] = [
      {
        label: "host loopback",
        group: "shared",
        port: port++,
        addr: "127.0.0.1",
        server: (c) => c,
        client: (c) => c,
        runs: [],
        errors: [],
      },
      { ...pair(counted.host, "cnso", "10.233.1.0/24", "socket"), label: "socket, counters" },
      { ...pair(uncounted.host, "ucso", "10.233.2.0/24", "socket"), label: "socket, no counters" },
      { ...pair(counted.host, "cnl3", "10.233.3.0/24", "l3"), label: "l3, counters" },
      { ...pair(uncounted.host, "ucl3", "10.233.4.0/24", "l3"), label: "l3, no counters" },
    ];
    // The uncounted parent loses its counter programs; its contexts' own programs are the same as the others'.
    detachCounters(uncounted.host);
    for (let run = 0; run < plan.runs; run++) {
      const result = await measureInTurns(rows, plan.turns);
      for (const r of rows) r.runs.push(result.get(r));
      log(`  run ${run + 1}: ${rows.map((r) => `${r.label} ${fmt(result.get(r), 2)}`).join(", ")} Gbit/s`);
    }
    const out: NonNullable<CountersFigures["datapath"]> = {};
    for (const level of ["socket", "l3"] as const) {
      const on = rows.find((r) => r.label === `${level}, counters`)!;
      const off = rows.find((r) => r.label === `${level}, no counters`)!;
      const ratios = on.runs.flatMap((v, i) => {
        const w = off.runs[i];
        return v !== undefined && w !== undefined && w > 0 ? [v / w] : [];
      });
      const c = combinedRatio(ratios);
      const median = (r: Row) => stats(r.runs.filter((x): x is number => x !== undefined)).median;
      out[level] = {
        counted: median(on),
        uncounted: median(off),
        ...(c ? { ratio: c.ratio } : {}),
        ...(c?.error !== undefined ? { error: c.error } : {}),
      };
    }
    return out;
  } finally {
    for (const [host, name] of made.reverse()) removeContext(host, name);
    for (const [host, name] of networks.reverse()) removeNetwork(host, name);
    counted.done();
    uncounted.done();
  }
}

/** (b) `n` contexts of one level, then the engine's /metrics work timed `scrapes` times. */
async function measureScrape(
  level: "socket" | "l2",
  n: number,
  scrapes: number,
  log: (l: string) => void,
): Promise<{ contexts: number; scrapeMs: number; p95Ms: number; readMs: number; bytes: number }> {
  const s = scratchHost(`scrape-${level}`, join(benchParent(), `scrape-${level}`));
  const { host } = s;
  const names: string[] = [];
  try {
    createNetwork(host, {
      name: "scr",
      driver: level === "l2" ? "bridge" : "host",
      subnets: ["10.234.0.0/20"],
    });
    const started = nowMs();
    for (let i = 0; i < n; i++) {
      createContext(host, { name: `s${i}`, level, networks: ["scr"] });
      names.push(`s${i}`);
    }
    log(`  ${n} ${level} contexts made in ${fmt((nowMs() - started) / 1000, 1)} s`);
    const metrics = new EngineMetrics(host);
    const times: number[] = [];
    const reads: number[] = [];
    let bytes = 0;
    await metrics.text(); // warm: the map found, the code compiled
    for (let i = 0; i < scrapes; i++) {
      const t = nowMs();
      const text = await metrics.text();
      times.push(nowMs() - t);
      bytes = text.length;
      const r = nowMs();
      statsView(host);
      reads.push(nowMs() - r);
    }
    const t = stats(times);
    return { contexts: n, scrapeMs: t.median, p95Ms: t.p95, readMs: stats(reads).median, bytes };
  } finally {
    for (const name of names.reverse()) removeContext(host, name);
    host.flushDeferred();
    removeNetwork(host, "scr");
    s.done();
  }
}

export async function countersSection(quick: boolean, log: (l: string) => void): Promise<CountersResult> {
  const plan = PLAN[quick ? "quick" : "full"];
  const figures: CountersFigures = {};
  const verdicts: Verdict[] = [];
  const problems: string[] = [];
  log("  data path: counters on against off");
  try {
    figures.datapath = await measureDatapath(plan, log);
  } catch (err) {
    problems.push(`data path: ${(err as Error).message.split("\n")[0]}`);
  }
  figures.scrape = {};
  for (const level of ["socket", "l2"] as const) {
    log(`  scrape: ${plan.population[level]} ${level} contexts`);
    try {
      figures.scrape[level] = await measureScrape(level, plan.population[level], plan.scrapes, log);
    } catch (err) {
      problems.push(`scrape (${level}): ${(err as Error).message.split("\n")[0]}`);
    }
  }
  for (const level of ["socket", "l3"] as const) {
    const d = figures.datapath?.[level];
    verdicts.push(
      d?.ratio === undefined
        ? { goal: GOALS[level], status: "not measured", figure: problems.join("; ") || "no runs" }
        : {
            goal: GOALS[level],
            status: d.ratio >= 0.98 ? "met" : "not met",
            figure: `${fmt(d.ratio, 3)}x${d.error !== undefined ? ` ± ${fmt(d.error, 3)}` : ""} (${fmt(d.counted, 2)} against ${fmt(d.uncounted, 2)} Gbit/s, median of runs)`,
          },
    );
  }
  const scrapeRows = Object.entries(figures.scrape);
  // The goal is at 1000 contexts: a smaller population (l2 in --quick) is shown but decides nothing.
  const atGoal = scrapeRows.filter(([, s]) => s.contexts >= 1000).map(([, s]) => s.scrapeMs);
  const worst = atGoal.length ? Math.max(...atGoal) : undefined;
  verdicts.push(
    scrapeRows.length === 0
      ? { goal: GOALS.scrape, status: "not measured", figure: problems.join("; ") }
      : {
          goal: GOALS.scrape,
          status: worst === undefined ? "not measured" : worst <= 50 ? "met" : "not met",
          figure: scrapeRows
            .map(([level, s]) => `${level} x${s.contexts}: ${fmt(s.scrapeMs, 1)} ms (p95 ${fmt(s.p95Ms, 1)})`)
            .join(", "),
        },
  );
  return { text: render(plan, figures, problems, quick), verdicts, figures };
}

function render(
  plan: (typeof PLAN)["quick" | "full"],
  f: CountersFigures,
  problems: string[],
  quick: boolean,
): string {
  const lines = [`## Counters (issue 21)${quick ? " (quick run)" : ""}`, ""];
  lines.push(
    `Data path (bench/datapath.ts's iperf3 turns, ${plan.runs} run(s) of ${plan.turns} turns): a pair of contexts under a cgroup parent with the counter programs against a pair under a parent without them, in the same turns; each run's figure is counted / uncounted, combined as bench/datapath.ts combines runs.`,
    "",
    "| path | with counters (Gbit/s) | without (Gbit/s) | ratio |",
    "|---|---|---|---|",
  );
  for (const level of ["socket", "l3"] as const) {
    const d = f.datapath?.[level];
    lines.push(
      `| ${level} contexts, host network | ${fmt(d?.counted, 2)} | ${fmt(d?.uncounted, 2)} | ${fmt(d?.ratio, 3)}${d?.error !== undefined ? ` ± ${fmt(d.error, 3)}` : ""} |`,
    );
  }
  lines.push(
    "",
    `Scrape: the engine's /metrics work (one reading of the counters and the Prometheus text, api/metrics.ts) on the engine's code in this process, median of ${plan.scrapes}; the reading alone (GET /v1/stats's work) beside it.`,
    "",
    "| contexts | scrape (ms) | p95 (ms) | reading alone (ms) | text size |",
    "|---|---|---|---|---|",
  );
  for (const [level, s] of Object.entries(f.scrape ?? {}))
    lines.push(
      `| ${s.contexts} ${level} | ${fmt(s.scrapeMs, 1)} | ${fmt(s.p95Ms, 1)} | ${fmt(s.readMs, 1)} | ${(s.bytes / 1024).toFixed(0)} KiB |`,
    );
  if (problems.length) lines.push("", `Not measured: ${problems.join("; ")}.`);
  return `${lines.join("\n")}\n`;
}
