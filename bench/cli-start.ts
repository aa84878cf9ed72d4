/**
 * The CLI-start section (issue 21): how long a `netctx` command takes as a whole process with the engine running,
 * against a bare node start (`node -e 0`) measured in the same turns, so machine noise moves both. Rows:
 *  - `netctx --version` (the fast client, no engine call);
 *  - `netctx ls` and `netctx create` (an l2 context on a bridge network) through the fast client and the engine:
 *    goal <= 1.3x a bare node start each; `netctx rm` beside them;
 *  - `netctx ls` through the full CLI (NETCTX_FULL_CLI=1), which every command paid before the fast client;
 * each with the same request sent from this process without a CLI (the engine's share of the row).
 * Each ratio is the median of the per-turn ratios. bench/cli-start-check.ts runs it alone.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { callEngine } from "../src/api/client.ts";
import { childrenCpuMs } from "./child-cpu.ts";
import { NETCTX_BIN, startEngine } from "./cni-netctx.ts";
import type { Verdict } from "./report.ts";
import { fmt, nowMs, stats } from "./stats.ts";

const PLAN = {
  quick: { turns: 10, population: 10 },
  full: { turns: 30, population: 50 },
} as const;

export const CLI_START_GOAL = 1.3;

type RowId = "version" | "ls" | "create" | "rm" | "lsFull";

const ROWS: Record<RowId, { label: string; goal: boolean }> = {
  version: { label: "`netctx --version`", goal: false },
  ls: { label: "`netctx ls` (engine running)", goal: true },
  create: { label: "`netctx create NAME --level l2 --network NET` (engine running)", goal: true },
  rm: { label: "`netctx rm NAME` (engine running)", goal: false },
  lsFull: { label: "`netctx ls` through the full CLI (NETCTX_FULL_CLI=1, engine running)", goal: false },
};

export interface CliStartRow {
  ms: number;
  /** Median over the turns of this row's time / the bare node start's time in the same turn. */
  ratio: number;
  /** The same with the command's CPU time (user + system), which waiting for a core does not lengthen. */
  cpuRatio: number;
  /** The same request from this process, without a CLI (median ms); undefined for rows without a request. */
  engineMs?: number;
  /** Median over the turns of (this row's time - the same turn's request without a CLI) / the bare node start. */
  cliOnlyRatio?: number;
}

export interface CliStartFigures {
  turns: number;
  population: number;
  nodeMs: number;
  /** The 1-minute load average before and after the turns: on a shared machine, how much else ran. */
  load: [number, number];
  rows: Partial<Record<RowId, CliStartRow>>;
}

export interface CliStartResult {
  text: string;
  verdicts: Verdict[];
  figures: CliStartFigures;
}

/** CPU time of the last timed() command. */
let lastCpuMs = 0;

function timed(argv: string[], env: NodeJS.ProcessEnv): number {
  const cpu = childrenCpuMs();
  const t = nowMs();
  const r = spawnSync(argv[0]!, argv.slice(1), {
    env,
    stdio: ["ignore", "ignore", "pipe"],
    encoding: "utf8",
  });
  const ms = nowMs() - t;
  lastCpuMs = childrenCpuMs() - cpu;
  if (r.status !== 0) throw new Error(`${argv.join(" ")} exited ${r.status}: ${r.stderr.trim()}`);
  return ms;
}

async function timedRequest(socket: string, method: string, path: string, body?: unknown): Promise<number> {
  const t = nowMs();
  if ((await callEngine(socket, method, path, body)) === undefined)
    throw new Error("the engine did not answer");
  return nowMs() - t;
}

/**
 * The last turn's removals leave the engine work for its next pause (batched nft removals, a new drift reading; the
 * kernel ends a removed netns in a worker, tens of ms later, and announces it): done before a turn, or it lands on
 * whichever command runs next, the bare node start first, and flatters every ratio. Settled until a settle finds the
 * drift reading current (an engine without one answers no `driftRead`), with a pause after each.
 */
async function settled(socket: string): Promise<void> {
  for (let round = 0; round < 10; round++) {
    const reply = await callEngine<{ driftRead?: boolean }>(socket, "POST", "/v1/settle");
    await sleep(100);
    if (!reply?.driftRead) return;
  }
}

export async function cliStartSection(quick: boolean, log: (line: string) => void): Promise<CliStartResult> {
  const plan = quick ? PLAN.quick : PLAN.full;
  const stateDir = mkdtempSync(join(tmpdir(), "netctx-bench-cli-"));
  const env = { ...process.env, NETCTX_STATE_DIR: stateDir };
  const socket = join(stateDir, "netctx.sock");
  const engine = await startEngine(stateDir);
  const perRow = () =>
    Object.fromEntries(["node", ...Object.keys(ROWS)].map((id) => [id, [] as number[]])) as Record<
      RowId | "node",
      number[]
    >;
  // Wall and CPU milliseconds per row, turn by turn.
  const samples = perRow();
  const cpu = perRow();
  const measure = (id: RowId | "node", argv: string[], runEnv: NodeJS.ProcessEnv = env) => {
    samples[id].push(timed(argv, runEnv));
    cpu[id].push(lastCpuMs);
  };
  const direct: Partial<Record<RowId, number[]>> = { ls: [], create: [], rm: [] };
  let loadBefore = 0;
  try {
    timed([NETCTX_BIN, "network", "create", "clistart", "--subnet", "10.201.0.0/16"], env);
    for (let i = 0; i < plan.population; i++)
      await timedRequest(socket, "POST", "/v1/contexts", {
        name: `pop${i}`,
        level: "l2",
        networks: ["clistart"],
      });
    log(`  cli start: ${plan.population} contexts, ${plan.turns} turns`);
    loadBefore = loadavg()[0]!;
    const bin = [process.execPath, NETCTX_BIN];
    for (let turn = 0; turn < plan.turns; turn++) {
      const name = `turn${turn}`;
      await settled(socket);
      measure("node", [process.execPath, "-e", "0"]);
      measure("version", [...bin, "--version"]);
      measure("ls", [...bin, "ls"]);
      measure("create", [...bin, "create", name, "--level", "l2", "--network", "clistart"]);
      measure("rm", [...bin, "rm", name]);
      measure("lsFull", [...bin, "ls"], { ...env, NETCTX_FULL_CLI: "1" });
      direct.ls!.push(await timedRequest(socket, "GET", "/v1/contexts"));
      direct.create!.push(
        await timedRequest(socket, "POST", "/v1/contexts", { name, level: "l2", networks: ["clistart"] }),
      );
      direct.rm!.push(await timedRequest(socket, "DELETE", `/v1/contexts/${name}`));
    }
  } finally {
    await engine.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
  const figures: CliStartFigures = {
    turns: plan.turns,
    population: plan.population,
    nodeMs: stats(samples.node).median,
    load: [loadBefore, loadavg()[0]!],
    rows: {},
  };
  for (const id of Object.keys(ROWS) as RowId[]) {
    const ratios = samples[id].map((ms, i) => ms / samples.node[i]!);
    const engineSamples = direct[id];
    const round = (x: number) => Math.round(x * 1000) / 1000;
    const cliOnly = engineSamples?.map((e, i) => (samples[id][i]! - e) / samples.node[i]!);
    figures.rows[id] = {
      ms: stats(samples[id]).median,
      ratio: round(stats(ratios).median),
      cpuRatio: round(stats(cpu[id].map((ms, i) => ms / cpu.node[i]!)).median),
      ...(engineSamples ? { engineMs: stats(engineSamples).median } : {}),
      ...(cliOnly ? { cliOnlyRatio: round(stats(cliOnly).median) } : {}),
    };
  }
  return { text: cliStartText(figures), verdicts: cliStartVerdicts(figures), figures };
}

function cliStartVerdicts(f: CliStartFigures): Verdict[] {
  return (Object.keys(ROWS) as RowId[])
    .filter((id) => ROWS[id].goal)
    .map((id) => {
      const row = f.rows[id];
      const goal = `CLI start: ${ROWS[id].label} <= ${CLI_START_GOAL}x a bare node start`;
      if (!row) return { goal, status: "not measured", figure: "n/a" };
      return {
        goal,
        status: row.ratio <= CLI_START_GOAL ? "met" : "not met",
        figure: `${fmt(row.ratio, 2)}x (${fmt(row.ms)} ms against ${fmt(f.nodeMs)} ms; CPU ${fmt(row.cpuRatio, 2)}x)`,
      };
    });
}

function cliStartText(f: CliStartFigures): string {
  const lines = [
    "## CLI start (issue 21)",
    "",
    `Whole commands as a user runs them, with \`netctx serve\` running on a store of ${f.population} l2 contexts, each in`,
    `${f.turns} turns beside \`node -e 0\` (a bare node start: ${fmt(f.nodeMs)} ms median here). The ratio is the median of`,
    'the per-turn ratios. "Engine alone" is the same request sent from the bench process, without a CLI: the part',
    'of the row the engine spends (for `ls` it reads the kernel to mark degraded contexts); "CLI alone" takes it',
    "out of each turn: the command's own start, parse, connection and output against a bare node start. \"x node",
    "CPU\" compares the commands' CPU time (user + system) instead, which a loaded machine does not lengthen; the",
    "engine's work is not in it.",
    `Load average (1 min) before and after the turns: ${f.load.map((x) => x.toFixed(2)).join(" and ")}; with more than`,
    "the machine's cores busy, every process waits for a core and the ratios shrink towards 1.",
    "",
    "| command | median ms | x node -e 0 | engine alone ms | CLI alone x node -e 0 | x node CPU | goal |",
    "|---|---|---|---|---|---|---|",
  ];
  for (const id of Object.keys(ROWS) as RowId[]) {
    const row = f.rows[id];
    if (!row) continue;
    lines.push(
      `| ${ROWS[id].label} | ${fmt(row.ms)} | ${fmt(row.ratio, 2)}x | ${fmt(row.engineMs)} | ${row.cliOnlyRatio === undefined ? "n/a" : `${fmt(row.cliOnlyRatio, 2)}x`} | ${fmt(row.cpuRatio, 2)}x | ${ROWS[id].goal ? `<= ${CLI_START_GOAL}x` : ""} |`,
    );
  }
  return `${lines.join("\n")}\n`;
}
