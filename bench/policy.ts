/**
 * The Policy section (issue 19), three measurements side by side in one run, inside the bench's throwaway host
 * namespace:
 *  (a) create+rm per l2 context through the library on a bridge network, without policies and on a `--default-deny`
 *      network with 2 policies per context (naming it, made before it), in alternating rounds: goal <= 1.2x;
 *  (b) the data path with policies against without, with bench/datapath.ts's method (iperf3 streams in turns):
 *      first the paths with the tables open and no policy ever written (no filter in any block, no cgroup program),
 *      then the same paths again beside a pair on a `--default-deny` network whose policy allows the stream. Each
 *      phase has its reference (raw veth pair, host loopback) in its turns, so the phases compare through it:
 *      (policed / reference, phase 2) / (plain / reference, phase 1), goal >= 0.95 for the bridge row (the shortcut
 *      in play) and the socket row. The plain rows of phase 2 show what the unselected pay once a policy exists, and
 *      a phase 3 after the policed pair went what the open path costs (the filters stay in the blocks);
 *  (c) `netctx policy add` and `policy rm` through the CLI and the resident engine at 1000 contexts (100 in
 *      --quick): the command's wall time, which ends after the engine wrote the tables; beside it `policy ls`, the
 *      same node start and request without a write, and the first add (the tables stop being open: every port's
 *      blocks get the filters).
 * bench/policy-check.ts runs it alone.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readConfig } from "../src/config.ts";
import { createContext, removeContext } from "../src/engine/contexts.ts";
import { createNetwork, removeNetwork } from "../src/engine/networks.ts";
import { addPolicy, removePolicy } from "../src/engine/policies.ts";
import { contextExecArgv } from "../src/exec/enter.ts";
import { Host } from "../src/host.ts";
import { cgroup2Root } from "../src/kernel/cgroup.ts";
import { specOf } from "../src/levels/driver.ts";
import type { ContextRecord } from "../src/model/records.ts";
import { engineCall, NETCTX_BIN, startEngine } from "./cni-netctx.ts";
import { kernelEnds, measureInTurns, type Row } from "./datapath.ts";
import type { Verdict } from "./report.ts";
import { fmt, nowMs, stats } from "./stats.ts";

const PLAN = {
  quick: { contexts: 20, rounds: 1, runs: 1, turns: 50, population: 100, latencySamples: 5 },
  full: { contexts: 100, rounds: 3, runs: 4, turns: 120, population: 1000, latencySamples: 20 },
} as const;

export interface PolicyFigures {
  create?: { plainMs: number; policedMs: number; ratio: number; contexts: number; rounds: number };
  datapath?: Record<string, { phase1?: number; phase2?: number; ratio?: number }>;
  latency?: {
    contexts: number;
    firstAddMs: number;
    addMs: number;
    rmMs: number;
    lsMs: number;
    /** The same add and rm as one HTTP request each to the engine's socket, without the CLI's node start. */
    engineAddMs: number;
    engineRmMs: number;
  };
}

export interface PolicyResult {
  text: string;
  verdicts: Verdict[];
  figures: PolicyFigures;
}

const GOALS = {
  create: "policy: create+rm per context, default-deny network and 2 policies per context <= 1.2x without",
  bridge: "policy: data path, l2 bridge row (shortcut) with policies >= 0.95x without",
  socket: "policy: data path, socket row with policies >= 0.95x without",
  latency: "policy: add and rm latency at 1000 contexts (CLI through the engine) reported",
} as const;

const median = (xs: number[]) => stats(xs).median;

/** A Host of its own on a fresh state directory, with the bench's cgroup parent (NETCTX_CGROUP_PARENT). */
function scratchHost(tag: string): { host: Host; stateDir: string; done: () => void } {
  const stateDir = mkdtempSync(join(tmpdir(), `netctx-bench-pol-${tag}-`));
  const host = Host.open(readConfig(process.env, { stateDir }));
  return {
    host,
    stateDir,
    done: () => {
      host.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** (a) One round of one variant: per-context create and rm times (ms). */
function createRound(policed: boolean, n: number): { create: number[]; rm: number[] } {
  const s = scratchHost(policed ? "deny" : "plain");
  const { host } = s;
  const create: number[] = [];
  const rm: number[] = [];
  try {
    createNetwork(host, {
      name: "plc",
      driver: "bridge",
      subnets: ["10.140.0.0/20"],
      ...(policed ? { defaultDeny: true } : {}),
    });
    if (policed)
      for (let i = 0; i < n; i++) {
        addPolicy(host, { name: `c${i}-web`, to: `c${i}`, from: `c${(i + 1) % n}`, ports: ["80/tcp"] });
        addPolicy(host, { name: `c${i}-tls`, to: `c${i}`, from: `c${(i + 2) % n}`, ports: ["443/tcp"] });
      }
    for (let i = 0; i < n; i++) {
      const t = nowMs();
      createContext(host, { name: `c${i}`, level: "l2", networks: ["plc"] });
      create.push(nowMs() - t);
    }
    for (let i = 0; i < n; i++) {
      const t = nowMs();
      removeContext(host, `c${i}`);
      rm.push(nowMs() - t);
    }
    host.flushDeferred();
    removeNetwork(host, "plc");
  } finally {
    s.done();
  }
  return { create, rm };
}

function measureCreates(
  plan: (typeof PLAN)["quick" | "full"],
  log: (l: string) => void,
): NonNullable<PolicyFigures["create"]> {
  const perVariant = {
    plain: { create: [] as number[], rm: [] as number[] },
    policed: { create: [] as number[], rm: [] as number[] },
  };
  for (let round = 0; round < plan.rounds; round++)
    for (const policed of round % 2 === 0 ? [false, true] : [true, false]) {
      const r = createRound(policed, plan.contexts);
      const into = perVariant[policed ? "policed" : "plain"];
      into.create.push(...r.create);
      into.rm.push(...r.rm);
      log(
        `  round ${round + 1} ${policed ? "default-deny + policies" : "plain"}: create ${fmt(median(r.create))} ms, rm ${fmt(median(r.rm))} ms (median)`,
      );
    }
  const plainMs = median(perVariant.plain.create) + median(perVariant.plain.rm);
  const policedMs = median(perVariant.policed.create) + median(perVariant.policed.rm);
  return { plainMs, policedMs, ratio: policedMs / plainMs, contexts: plan.contexts, rounds: plan.rounds };
}

/** (b) The data path's paths, made in a host of its own and measured in two phases. */
class DatapathWorld {
  private readonly scratch = scratchHost("dp");
  private readonly made: string[] = [];
  private readonly networks: string[] = [];
  private readonly netns: string[] = [];
  private port = 5301;

  private get host(): Host {
    return this.scratch.host;
  }

  private pair(
    network: string,
    driver: string,
    subnet: string,
    level: string,
    deny: boolean,
  ): [ContextRecord, ContextRecord] {
    createNetwork(this.host, {
      name: network,
      driver,
      subnets: [subnet],
      ...(deny ? { defaultDeny: true } : {}),
    });
    this.networks.push(network);
    const make = (name: string) => {
      const r = createContext(this.host, { name, level, networks: [network] });
      this.made.push(name);
      return r;
    };
    return [make(`${network}-a`), make(`${network}-b`)];
  }

  private row(label: string, group: Row["group"], a: ContextRecord, b: ContextRecord): Row {
    const exec = (r: ContextRecord) => (cmd: string[]) => contextExecArgv(this.host, r, cmd);
    const addr = specOf(a).attachments[0]!.addresses[0]!.split("/")[0]!;
    return {
      label,
      group,
      port: this.port++,
      addr,
      server: exec(a),
      client: exec(b),
      serverNetns: specOf(a).netns,
      runs: [],
      errors: [],
    };
  }

  raw(): Row {
    const ns = ["ncpl-va", "ncpl-vb"] as const;
    const addr = ["10.232.0.1", "10.232.0.2"];
    for (const n of ns) {
      sh(`ip netns add ${n} && ip -n ${n} link set lo up`);
      this.netns.push(n);
    }
    sh(
      [
        `ip link add ncpl-a netns ${ns[0]} type veth peer name ncpl-b netns ${ns[1]}`,
        ...ns.flatMap((n, i) => [
          `ip -n ${n} addr add ${addr[i]}/24 dev ncpl-${"ab"[i]}`,
          `ip -n ${n} link set ncpl-${"ab"[i]} up`,
        ]),
      ].join(" && "),
    );
    return {
      label: "raw veth pair",
      group: "l2",
      port: this.port++,
      ...kernelEnds(ns, addr[0]!),
      runs: [],
      errors: [],
    };
  }

  loopback(): Row {
    const plain = (cmd: string[]) => cmd;
    return {
      label: "host loopback",
      group: "shared",
      port: this.port++,
      addr: "127.0.0.1",
      server: plain,
      client: plain,
      runs: [],
      errors: [],
    };
  }

  plainRows(): { bridge: Row; socket: Row } {
    const [b1, b2] = this.pair("plbr", "bridge", "10.232.1.0/24", "l2", false);
    const [s1, s2] = this.pair("plso", "host", "10.232.3.0/24", "socket", false);
    return {
      bridge: this.row("l2 bridge, no policy", "l2", b1, b2),
      socket: this.row("socket, no policy", "shared", s1, s2),
    };
  }

  /** Default-deny networks whose one policy lets the client's stream (and its control connection) reach the server. */
  policedRows(): { bridge: Row; socket: Row } {
    const [b1, b2] = this.pair("pldb", "bridge", "10.232.2.0/24", "l2", true);
    const [s1, s2] = this.pair("plds", "host", "10.232.4.0/24", "socket", true);
    const bridge = this.row("l2 bridge, default-deny + allowing policy", "l2", b1, b2);
    const socket = this.row("socket, default-deny + allowing policy", "shared", s1, s2);
    for (const [r, a, b] of [
      [bridge, b1, b2],
      [socket, s1, s2],
    ] as const)
      addPolicy(this.host, { name: `allow-${a.name}`, to: a.name, from: b.name, ports: [`${r.port}/tcp`] });
    return { bridge, socket };
  }

  /** The policed pairs, their networks and policies go: the tables are open again, the filters stay in the blocks. */
  dropPoliced(): void {
    for (const network of ["pldb", "plds"]) {
      for (const side of ["a", "b"]) {
        const name = `${network}-${side}`;
        if (side === "a") removePolicy(this.host, `allow-${name}`);
        removeContext(this.host, name);
        this.made.splice(this.made.indexOf(name), 1);
      }
      this.host.flushDeferred();
      removeNetwork(this.host, network);
      this.networks.splice(this.networks.indexOf(network), 1);
    }
  }

  teardown(): void {
    for (const name of this.made.reverse()) removeContext(this.host, name);
    this.host.flushDeferred();
    for (const name of this.networks.reverse()) removeNetwork(this.host, name);
    for (const n of this.netns) sh(`ip netns del ${n}`);
    this.scratch.done();
  }
}

function sh(script: string): void {
  const r = spawnSync("sh", ["-c", script], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${script}: ${r.stderr.trim()}`);
}

async function runGroups(rows: Row[], runs: number, turns: number): Promise<void> {
  for (let run = 0; run < runs; run++)
    for (const group of ["l2", "shared"] as const) {
      const members = rows.filter((r) => r.group === group);
      try {
        const result = await measureInTurns(members, turns);
        for (const r of members) r.runs.push(result.get(r));
      } catch (err) {
        for (const r of members) {
          r.runs.push(undefined);
          r.errors.push((err as Error).message.split("\n")[0]!);
        }
      }
    }
}

/** Median over runs of row / reference (Gbit/s of the same run). */
function toReference(row: Row, ref: Row): number | undefined {
  const ratios = row.runs.flatMap((v, i) => (v !== undefined && ref.runs[i] ? [v / ref.runs[i]!] : []));
  return ratios.length ? median(ratios) : undefined;
}

async function measureDatapath(
  plan: (typeof PLAN)["quick" | "full"],
  log: (l: string) => void,
): Promise<{ figures: NonNullable<PolicyFigures["datapath"]>; errors: string[] }> {
  const world = new DatapathWorld();
  try {
    const raw = world.raw();
    const loopback = world.loopback();
    const plain = world.plainRows();
    log("  phase 1: no policy ever written");
    const phase1 = {
      raw: { ...raw },
      loopback: { ...loopback },
      bridge: { ...plain.bridge },
      socket: { ...plain.socket },
    };
    await runGroups(Object.values(phase1), plan.runs, plan.turns);
    log("  phase 2: policies in force beside the same paths");
    const policed = world.policedRows();
    const phase2 = {
      raw: { ...raw, runs: [], errors: [] },
      loopback: { ...loopback, runs: [], errors: [] },
      bridge: { ...plain.bridge, runs: [], errors: [] },
      socket: { ...plain.socket, runs: [], errors: [] },
      policedBridge: policed.bridge,
      policedSocket: policed.socket,
    };
    await runGroups(Object.values(phase2), plan.runs, plan.turns);
    log("  phase 3: the policies gone again, the filters left in the blocks (the open path)");
    world.dropPoliced();
    const phase3 = {
      raw: { ...raw, runs: [], errors: [] },
      loopback: { ...loopback, runs: [], errors: [] },
      bridge: { ...plain.bridge, runs: [], errors: [] },
      socket: { ...plain.socket, runs: [], errors: [] },
    };
    await runGroups(Object.values(phase3), plan.runs, plan.turns);
    const bridge1 = toReference(phase1.bridge, phase1.raw);
    const socket1 = toReference(phase1.socket, phase1.loopback);
    const entry = (p1: number | undefined, p2: number | undefined) => ({
      ...(p1 !== undefined ? { phase1: p1 } : {}),
      ...(p2 !== undefined ? { phase2: p2 } : {}),
      ...(p1 !== undefined && p2 !== undefined ? { ratio: p2 / p1 } : {}),
    });
    const errors = [...Object.values(phase1), ...Object.values(phase2), ...Object.values(phase3)].flatMap(
      (r) => r.errors.map((e) => `${r.label}: ${e}`),
    );
    return {
      figures: {
        "l2 bridge, default-deny + allowing policy": entry(
          bridge1,
          toReference(phase2.policedBridge, phase2.raw),
        ),
        "l2 bridge, unselected, a policy elsewhere": entry(bridge1, toReference(phase2.bridge, phase2.raw)),
        "socket, default-deny + allowing policy": entry(
          socket1,
          toReference(phase2.policedSocket, phase2.loopback),
        ),
        "socket, unselected, a policy elsewhere": entry(socket1, toReference(phase2.socket, phase2.loopback)),
        "l2 bridge, tables open, filter left in the blocks": entry(
          bridge1,
          toReference(phase3.bridge, phase3.raw),
        ),
        "socket, tables open, cgroup programs left": entry(
          socket1,
          toReference(phase3.socket, phase3.loopback),
        ),
      },
      errors,
    };
  } finally {
    world.teardown();
  }
}

/** (c) The CLI through the engine: wall time of each command. */
function cli(stateDir: string, args: string[]): number {
  const t = nowMs();
  const r = spawnSync(NETCTX_BIN, args, {
    env: { ...process.env, NETCTX_STATE_DIR: stateDir },
    encoding: "utf8",
  });
  const ms = nowMs() - t;
  if (r.status !== 0) throw new Error(`netctx ${args.join(" ")}: ${r.stderr.trim()}`);
  return ms;
}

async function measureLatency(
  plan: (typeof PLAN)["quick" | "full"],
  log: (l: string) => void,
): Promise<NonNullable<PolicyFigures["latency"]>> {
  const n = plan.population;
  let s = scratchHost("lat");
  const stateDir = s.stateDir;
  createNetwork(s.host, { name: "pll", driver: "bridge", subnets: ["10.141.0.0/20"] });
  for (let i = 0; i < n; i++) createContext(s.host, { name: `l${i}`, level: "l2", networks: ["pll"] });
  log(`  ${n} contexts made`);
  s.host.close();
  const engine = await startEngine(stateDir);
  const adds: number[] = [];
  const rms: number[] = [];
  const ls: number[] = [];
  const engineAdds: number[] = [];
  const engineRms: number[] = [];
  let firstAddMs = 0;
  try {
    cli(stateDir, ["policy", "ls"]); // the engine warmed up
    firstAddMs = cli(stateDir, ["policy", "add", "first", "--to", "l0", "--from", "l1", "--port", "80/tcp"]);
    for (let k = 0; k < plan.latencySamples; k++) {
      const to = `l${(k * 7 + 2) % n}`;
      const from = `l${(k * 7 + 3) % n}`;
      adds.push(cli(stateDir, ["policy", "add", `p${k}`, "--to", to, "--from", from, "--port", "80/tcp"]));
      rms.push(cli(stateDir, ["policy", "rm", `p${k}`]));
      ls.push(cli(stateDir, ["policy", "ls"]));
      engineAdds.push(
        await engineCall(stateDir, "POST", "/v1/policies", { name: `q${k}`, to, from, ports: ["80/tcp"] }),
      );
      engineRms.push(await engineCall(stateDir, "DELETE", `/v1/policies/q${k}`));
    }
    cli(stateDir, ["policy", "rm", "first"]);
  } finally {
    await engine.stop();
    s = { ...s, host: Host.open(readConfig(process.env, { stateDir })) };
    for (let i = 0; i < n; i++) removeContext(s.host, `l${i}`);
    s.host.flushDeferred();
    removeNetwork(s.host, "pll");
    s.done();
  }
  return {
    contexts: n,
    firstAddMs,
    addMs: median(adds),
    rmMs: median(rms),
    lsMs: median(ls),
    engineAddMs: median(engineAdds),
    engineRmMs: median(engineRms),
  };
}

export async function policySection(quick: boolean, log: (line: string) => void): Promise<PolicyResult> {
  const plan = PLAN[quick ? "quick" : "full"];
  const previousParent = process.env.NETCTX_CGROUP_PARENT;
  const cgroupParent = join(cgroup2Root(), `netctx-bench-pol-${process.pid}`);
  // Shared-stack contexts' cgroups and the policy's cgroup programs under a parent of our own.
  process.env.NETCTX_CGROUP_PARENT = cgroupParent;
  const figures: PolicyFigures = {};
  const problems: string[] = [];
  const attempt = async (what: string, fn: () => Promise<void>) => {
    log(`policy: ${what}`);
    try {
      await fn();
    } catch (err) {
      problems.push(`${what}: ${(err as Error).message.split("\n")[0]}`);
    }
  };
  try {
    await attempt("create+rm", async () => {
      figures.create = measureCreates(plan, log);
    });
    const iperf = spawnSync("iperf3", ["--version"]);
    if (iperf.error || iperf.status !== 0)
      problems.push("data path: iperf3 is not installed (Debian package iperf3)");
    else
      await attempt("data path", async () => {
        const r = await measureDatapath(plan, log);
        figures.datapath = r.figures;
        problems.push(...r.errors);
      });
    await attempt(`add/rm latency at ${plan.population} contexts`, async () => {
      figures.latency = await measureLatency(plan, log);
    });
  } finally {
    try {
      rmdirSync(cgroupParent);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT")
        problems.push(`cgroup parent: ${(err as Error).message}`);
    }
    if (previousParent === undefined) delete process.env.NETCTX_CGROUP_PARENT;
    else process.env.NETCTX_CGROUP_PARENT = previousParent;
  }
  return { text: render(plan, figures, problems), verdicts: verdicts(figures, problems), figures };
}

function verdicts(f: PolicyFigures, problems: string[]): Verdict[] {
  const why = problems.join("; ") || "failed";
  const out: Verdict[] = [];
  const c = f.create;
  out.push(
    c
      ? {
          goal: GOALS.create,
          status: c.ratio <= 1.2 ? "met" : "not met",
          figure: `${fmt(c.ratio, 2)}x (${fmt(c.policedMs)} against ${fmt(c.plainMs)} ms, ${c.contexts} contexts, ${c.rounds} rounds)`,
        }
      : { goal: GOALS.create, status: "not measured", figure: why },
  );
  for (const [goal, key] of [
    [GOALS.bridge, "l2 bridge, default-deny + allowing policy"],
    [GOALS.socket, "socket, default-deny + allowing policy"],
  ] as const) {
    const r = f.datapath?.[key]?.ratio;
    out.push(
      r === undefined
        ? { goal, status: "not measured", figure: why }
        : {
            goal,
            status: r >= 0.95 ? "met" : "not met",
            figure: `${fmt(r, 3)}x (each against its reference in its own turns)`,
          },
    );
  }
  const l = f.latency;
  out.push(
    l
      ? {
          goal: GOALS.latency,
          status: "met",
          figure: `CLI add ${fmt(l.addMs, 0)} ms, rm ${fmt(l.rmMs, 0)} ms (policy ls ${fmt(l.lsMs, 0)} ms), first add ${fmt(l.firstAddMs, 0)} ms; engine request add ${fmt(l.engineAddMs, 1)} ms, rm ${fmt(l.engineRmMs, 1)} ms at ${l.contexts} contexts`,
        }
      : { goal: GOALS.latency, status: "not measured", figure: why },
  );
  return out;
}

function render(plan: (typeof PLAN)["quick" | "full"], f: PolicyFigures, problems: string[]): string {
  const lines = [`## Policy (issue 19)`, ""];
  const c = f.create;
  lines.push(
    `Create+rm per l2 context through the library, ${plan.contexts} contexts a round, ${plan.rounds} round(s) per variant in alternating order (median create + median rm):`,
    "",
    "| variant | create+rm ms |",
    "|---|---|",
    `| bridge network, no policy | ${fmt(c?.plainMs)} |`,
    `| \`--default-deny\` bridge network, 2 policies per context | ${fmt(c?.policedMs)} |`,
    `| ratio | ${fmt(c?.ratio, 2)}x |`,
    "",
    `Data path (bench/datapath.ts's iperf3 turns, ${plan.runs} run(s) of ${plan.turns} turns a phase): each row against its reference (raw veth pair for l2, host loopback for socket) in the same turns; phase 1 before any policy (no filter in the ports' blocks, no cgroup program), phase 2 with a \`--default-deny\` pair whose policy allows the stream beside the same paths, phase 3 after that pair and its policy went (the tables open, the filters still in the blocks: the open path, one array lookup):`,
    "",
    "| path | phase 1, no policy ever (x reference) | this case (x reference) | this case / phase 1 |",
    "|---|---|---|---|",
    ...Object.entries(f.datapath ?? {}).map(
      ([label, d]) => `| ${label} | ${fmt(d.phase1, 3)} | ${fmt(d.phase2, 3)} | ${fmt(d.ratio, 3)} |`,
    ),
    "",
  );
  const l = f.latency;
  lines.push(
    `Policy add/rm through the CLI and the resident engine at ${l?.contexts ?? plan.population} l2 contexts (median of ${plan.latencySamples}; the command returns after the engine wrote the tables): add ${fmt(l?.addMs, 1)} ms, rm ${fmt(l?.rmMs, 1)} ms; \`policy ls\` (node start and a request, no write) ${fmt(l?.lsMs, 1)} ms; the first add, which turns the open tables into selecting ones and puts the policy filters in the network's blocks, ${fmt(l?.firstAddMs, 1)} ms. The same add and rm as one request each to the engine's socket (what the CLI sends, no node start): add ${fmt(l?.engineAddMs, 1)} ms, rm ${fmt(l?.engineRmMs, 1)} ms.`,
  );
  if (problems.length) lines.push("", ...problems.map((p) => `- not measured / error: ${p}`));
  return `${lines.join("\n")}\n`;
}
