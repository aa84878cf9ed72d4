/**
 * The DNS section (issue 20): netctx's DNS server (`netctx serve`, its worker thread) and aardvark-dns 1.4 (podman's
 * DNS server, apt `aardvark-dns`) side by side in one run, on the same network, serving the same names, loaded by
 * dnsperf from inside a context of that network:
 *  - the same bridge network: netctx on its gateway port 53, aardvark-dns on the same gateway port 5533 (its own
 *    default), with a config file for the network written as netavark writes it (gateway and the network's upstream
 *    on the first line, a line per container: id, IPv4, IPv6, names). Both know the contexts `web` and `client`;
 *  - an upstream: a stub server in an "outside" namespace (test/utils/dns-stub.mjs: far.example, TTL 60), netctx's
 *    through `--dns-resolv-conf`, aardvark-dns's as the network's resolver on its config's first line;
 *  - load: dnsperf (one thread, one socket, 100 queries outstanding, -l seconds) from the netns of `client`, asking
 *    (a) `web A`, a context name, and (b) `far.example A`, a forwarded name that netctx answers from its cache after
 *    the first query (aardvark-dns 1.4 has no cache: it forwards every query);
 *  - pinning (cpu-pinning.ts): in the rounds dnsperf runs on one core and the server under test on the other, every
 *    thread of it (aardvark-dns started there), so a rate is not the share of two cores the scheduler gave a server
 *    beside its own load generator; the server's and dnsperf's CPU time per run say which of them set the rate;
 *  - figures: dnsperf's queries per second; p50 and p99 from its verbose output (-v prints one line per answer with
 *    its latency: `> NOERROR web A 0.000229`), nearest rank over every answer of the run;
 *  - rounds alternate the servers' order (the machine is shared: neighbours' load shows up as spread between
 *    rounds, reported min-max); the verdict takes the median over rounds of each figure;
 *  - during an `apply` of 500 contexts through the engine (one POST /v1/apply to its socket, what `netctx apply`
 *    sends), dnsperf asks netctx for `web` at a fixed rate; the p99 over that window, beside the same rate without
 *    an apply just before. Three cycles (apply, destroy), each with its own "before": the machine's own noise at
 *    that rate is of the same order as the goal, and shows in the "before" figures. A second dnsperf asks
 *    aardvark-dns the same at the same time, a server the apply does not touch: the machine's share of the tail.
 * bench/dns-check.ts runs it alone.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readConfig } from "../src/config.ts";
import { createContext, removeContext } from "../src/engine/contexts.ts";
import { createNetwork, removeNetwork } from "../src/engine/networks.ts";
import { Host } from "../src/host.ts";
import { specOf } from "../src/levels/driver.ts";
import { childrenCpuMs, processCpuMs } from "./child-cpu.ts";
import { engineCall, startEngine } from "./cni-netctx.ts";
import { CpuBudget, type CpuBudgetSpec, findCpuController } from "./cpu-budget.ts";
import { type CoreSplit, coreSplit, onCpus, pinProcess } from "./cpu-pinning.ts";
import type { Verdict } from "./report.ts";
import { fmt, nowMs, sleep } from "./stats.ts";

const AARDVARK = "/usr/lib/podman/aardvark-dns";
const STUB = join(import.meta.dirname, "..", "test", "utils", "dns-stub.mjs");
const NETWORK = "dnsb";
const SUBNET = "10.150.0.0/20";
const GATEWAY = "10.150.0.1";
const OUTSIDE = { netns: "ncdns-out", hostIfname: "ncdns-o", host: "192.0.2.254", stub: "192.0.2.53" };
const FAR = { name: "far.example", address: "203.0.113.9" };
const PORTS = { netctx: 53, aardvark: 5533 } as const;

const PLAN = {
  quick: { rounds: 2, seconds: 2, applyContexts: 100, applyRate: 3000, applyCycles: 1 },
  full: { rounds: 6, seconds: 5, applyContexts: 500, applyRate: 5000, applyCycles: 3 },
} as const;

/**
 * The load of a round: one dnsperf thread (its sender and receiver), one socket, 100 queries outstanding. With each
 * server on a core of its own, 150 outstanding gave the same rates within the rounds' spread (measured), and at 200
 * dnsperf counted queries lost against both servers (more queued than a server's socket takes: its default receive
 * buffer, 212992 bytes, is charged ~800 bytes a datagram), each one holding an outstanding slot until its timeout.
 */
const ROUND_LOAD = ["-T", "1", "-c", "1", "-q", "100"];

/**
 * The rounds' CPU budget, the same for both servers: 35% of one core in every 10 ms (CFS bandwidth, cpu-budget.ts).
 * Pinned to a core of their own without one, what dnsperf on its core could ask for set the rate on some runs (a full
 * run saw it top out near 125k q/s with both servers keeping up; a later one on the same machine reached 200k): the
 * ratio of the rates was then the load generator's. At 35% a server that spends 4-10 us of CPU an answer gives
 * 35-80k answers a second, with dnsperf about a third busy (measured), so the server sets the rate on any such day. The period is short so that a throttled server waits at most ~6.5 ms for its next slice:
 * that wait shows in both servers' p99 alike.
 */
const ROUND_BUDGET: CpuBudgetSpec = { share: 0.35, periodUs: 10_000 };

export type ServerId = keyof typeof PORTS;
export type NameId = "context" | "forwarded";
export const SERVER_LABEL: Record<ServerId, string> = {
  netctx: "netctx (worker thread of `netctx serve`)",
  aardvark: "aardvark-dns 1.4",
};
const NAME_LABEL: Record<NameId, string> = {
  context: "a context name (`web A`)",
  forwarded: "a cached forwarded name (`far.example A`)",
};
const QUERY: Record<NameId, string> = { context: "web A", forwarded: `${FAR.name} A` };

/** One dnsperf run. */
export interface DnsperfRun {
  qps: number;
  answers: number;
  lost: number;
  /** Answers whose RCODE was not NOERROR (a server that answers wrongly fast is not faster). */
  errors: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /**
   * CPU time over the run (rounds only): the server's process, every thread, and dnsperf's. A core's share near 100%
   * says who set the rate: the server when its own, the load generator when dnsperf's.
   */
  cpu?: { wallMs: number; serverMs: number; loadMs: number };
  /** Rounds only, under a budget: the share of the run's CFS periods in which the server was throttled. */
  throttledShare?: number;
}

export interface DnsFigures {
  rounds: number;
  seconds: number;
  /** Per server and name: one run per round, in round order. */
  runs: Partial<Record<ServerId, Partial<Record<NameId, DnsperfRun[]>>>>;
  /** One entry per apply cycle. */
  applies: ApplyCycle[];
  /** The rounds' CPUs: dnsperf's and the server's (absent: one CPU, nothing pinned). */
  cores?: { load: number; server: number };
  /** The rounds' CPU budget for the server under test, and how it was set (absent: no cpu controller). */
  budget?: CpuBudgetSpec & { how: string };
}

export interface ApplyCycle {
  contexts: number;
  rate: number;
  applySeconds: number;
  /** The same rate for 4 s just before the apply. */
  before: DnsperfRun;
  during: DnsperfRun;
  /** aardvark-dns asked the same way at the same time: the machine's share of the figures. */
  aardvark: { before: DnsperfRun; during: DnsperfRun };
}

export interface DnsResult {
  text: string;
  verdicts: Verdict[];
  figures: DnsFigures;
}

const GOALS = {
  context: "dns: context name, netctx >= 1.5x aardvark-dns's queries per second at <= its p99",
  forwarded: "dns: cached forwarded name, netctx >= 1.5x aardvark-dns's queries per second at <= its p99",
  apply: "dns: netctx's p99 <= 5 ms during an apply of 500 contexts",
} as const;

function sh(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

/** Nearest-rank quantile of sorted samples. */
function quantile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? Number.NaN;
}

const median = (xs: readonly number[]) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );

/** dnsperf's verbose output: a line per answer (`> RCODE NAME TYPE SECONDS`), then its summary. */
export function parseDnsperf(out: string): DnsperfRun {
  const latencies: number[] = [];
  let errors = 0;
  for (const line of out.split("\n")) {
    if (!line.startsWith("> ")) continue;
    const fields = line.split(" ");
    const seconds = Number(fields[fields.length - 1]);
    // A line cut short when dnsperf is interrupted carries no latency.
    if (!Number.isFinite(seconds)) continue;
    latencies.push(seconds * 1000);
    if (fields[1] !== "NOERROR") errors++;
  }
  latencies.sort((a, b) => a - b);
  const summary = (label: string) => {
    const m = new RegExp(`${label}:\\s+([0-9.]+)`).exec(out);
    if (!m) throw new Error(`dnsperf printed no "${label}": ${out.slice(-300)}`);
    return Number(m[1]);
  };
  return {
    qps: summary("Queries per second"),
    answers: latencies.length,
    lost: summary("Queries lost"),
    errors,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    maxMs: latencies[latencies.length - 1] ?? Number.NaN,
  };
}

/**
 * dnsperf from `netns` against GATEWAY:port, on `cpu` when given; stop() ends it early (SIGINT: it still prints its
 * summary). Its output (a line per answer) goes to `outFile`, read once it has ended: a pipe into this process would
 * have this process wake for every few lines, on the cores the servers and dnsperf need (at ~100k answers a second
 * dnsperf through a pipe reached 30-40% fewer q/s of either server than through a file, measured).
 */
function startDnsperf(
  netns: string,
  port: number,
  queryFile: string,
  outFile: string,
  extra: string[],
  cpu?: number,
): { done: Promise<DnsperfRun>; stop: () => void } {
  const dnsperf = ["nsenter", `--net=${netns}`, "--", "dnsperf", "-s", GATEWAY, "-p", String(port)];
  const argv = [...(cpu === undefined ? dnsperf : onCpus(cpu, dnsperf)), "-d", queryFile, "-v", ...extra];
  const out = openSync(outFile, "w");
  let child: ChildProcess;
  try {
    child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", out, out] });
  } finally {
    closeSync(out);
  }
  const done = new Promise<DnsperfRun>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      const text = readFileSync(outFile, "utf8");
      rmSync(outFile, { force: true });
      if (code !== 0) reject(new Error(`dnsperf exited with ${code}: ${text.slice(-300)}`));
      else
        try {
          resolve(parseDnsperf(text));
        } catch (err) {
          reject(err);
        }
    });
  });
  return { done, stop: () => child.kill("SIGINT") };
}

/** The stub upstream in a namespace of its own, reached from the bench's host over a veth. */
class Upstream {
  private stub: ChildProcess | undefined;

  async start(): Promise<void> {
    const o = OUTSIDE;
    sh(["ip", "netns", "add", o.netns]);
    sh(["ip", "link", "add", o.hostIfname, "type", "veth", "peer", "name", "eth0", "netns", o.netns]);
    sh(["ip", "link", "set", o.hostIfname, "up"]);
    sh(["ip", "addr", "add", `${o.host}/24`, "dev", o.hostIfname]);
    sh(["ip", "-n", o.netns, "link", "set", "lo", "up"]);
    sh(["ip", "-n", o.netns, "link", "set", "eth0", "up"]);
    sh(["ip", "-n", o.netns, "addr", "add", `${o.stub}/24`, "dev", "eth0"]);
    // It prints a line per query: nobody reads them here, and a pipe left unread would fill and stall it.
    const stub = spawn(
      "nsenter",
      [
        `--net=/run/netns/${o.netns}`,
        "--",
        process.execPath,
        STUB,
        o.stub,
        JSON.stringify({ [FAR.name]: FAR.address }),
        "60",
      ],
      { stdio: ["pipe", "pipe", "inherit"] },
    );
    this.stub = stub;
    await new Promise<void>((resolve, reject) => {
      stub.once("exit", (code) => reject(new Error(`the stub upstream exited with ${code}`)));
      stub.stdout!.once("data", () => {
        stub.stdout!.resume();
        stub.stdout!.on("data", () => {});
        resolve();
      });
    });
  }

  async stop(): Promise<void> {
    const stub = this.stub;
    if (stub && stub.exitCode === null) {
      const exited = new Promise((r) => stub.once("exit", r));
      stub.stdin!.end();
      stub.removeAllListeners("exit");
      await Promise.race([exited, sleep(2000)]);
      if (stub.exitCode === null) stub.kill("SIGKILL");
    }
    spawnSync("ip", ["netns", "del", OUTSIDE.netns]);
  }
}

/**
 * aardvark-dns as netavark starts it (`aardvark-dns --config DIR -p PORT run`: it forks, and the parent returns once
 * the child serves), with DIR holding one file per network in netavark's format (aardvark-dns's config.md). Started
 * on one CPU it sizes its tokio runtime for that CPU (one worker thread); its threads pinned after a start on two
 * would take turns on one core, each switch a cost of the pinning and not of the server (measured: ~23% of its
 * samples in finish_task_switch, and 30-40% fewer q/s).
 */
class Aardvark {
  pid: number | undefined;
  constructor(private readonly dir: string) {}

  start(contexts: { name: string; address: string }[], cpu?: number): void {
    mkdirSync(this.dir, { recursive: true });
    const lines = [
      `${GATEWAY} ${OUTSIDE.stub}`,
      ...contexts.map((c, i) => `${(i + 1).toString(16).padStart(64, "0")} ${c.address}  ${c.name}`),
    ];
    writeFileSync(join(this.dir, NETWORK), `${lines.join("\n")}\n`);
    const argv = [AARDVARK, "--config", this.dir, "-p", String(PORTS.aardvark), "run"];
    sh(cpu === undefined ? argv : onCpus(cpu, argv));
    this.pid = Number(readFileSync(join(this.dir, "aardvark.pid"), "utf8").trim());
  }

  /** Ends it and waits until it has gone, so that it can be started again on the same port. */
  async stop(): Promise<void> {
    const pid = this.pid;
    this.pid = undefined;
    if (pid === undefined) return;
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      return; // gone already
    }
    for (let waited = 0; waited < 5000; waited += 20) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await sleep(20);
    }
    process.kill(pid, "SIGKILL");
  }
}

/** What busybox nslookup in the client's netns gets for `name` from `port`: the answer's addresses. */
function lookup(netns: string, name: string, port: number): string[] {
  const r = spawnSync(
    "nsenter",
    [`--net=${netns}`, "--", "busybox", "nslookup", `-port=${port}`, name, GATEWAY],
    { encoding: "utf8", timeout: 10_000 },
  );
  const answer = r.stdout
    .split(/\nName:/)
    .slice(1)
    .join("\n");
  return [...answer.matchAll(/Address:\s+(\S+)/g)].map((m) => m[1]!);
}

export async function dnsSection(quick: boolean, log: (line: string) => void): Promise<DnsResult> {
  const plan = PLAN[quick ? "quick" : "full"];
  const figures: DnsFigures = { rounds: plan.rounds, seconds: plan.seconds, runs: {}, applies: [] };
  const problems: string[] = [];
  for (const tool of [AARDVARK, "dnsperf"])
    if (spawnSync(tool, ["--version"]).error)
      return notMeasured(plan, figures, `${tool} is not installed (apt aardvark-dns dnsperf)`);

  const scratch = mkdtempSync(join(tmpdir(), "netctx-bench-dns-"));
  const stateDir = join(scratch, "state");
  mkdirSync(stateDir);
  const upstream = new Upstream();
  const aardvark = new Aardvark(join(scratch, "aardvark"));
  let engine: Awaited<ReturnType<typeof startEngine>> | undefined;
  const budgets: Partial<Record<ServerId, CpuBudget>> = {};
  const host = Host.open(readConfig(process.env, { stateDir }));
  let hostOpen = true;
  try {
    await upstream.start();
    createNetwork(host, { name: NETWORK, driver: "bridge", subnets: [SUBNET] });
    const addressOf = (name: string) => {
      const r = createContext(host, { name, level: "l2", networks: [NETWORK] });
      return {
        name,
        address: specOf(r).attachments[0]!.addresses[0]!.split("/")[0]!,
        netns: specOf(r).netns,
      };
    };
    const web = addressOf("web");
    const client = addressOf("client");
    const netns = client.netns!;
    host.close();
    hostOpen = false;
    writeFileSync(join(scratch, "upstream-resolv.conf"), `nameserver ${OUTSIDE.stub}\n`);
    engine = await startEngine(stateDir, ["--dns-resolv-conf", join(scratch, "upstream-resolv.conf")]);
    const rounds = process.argv.includes("--apply-only") ? 0 : plan.rounds;
    // The rounds' servers each on a core of their own, away from dnsperf's; aardvark-dns starts there (see Aardvark).
    const split = rounds > 0 ? coreSplit() : undefined;
    if (split) figures.cores = { load: split.load, server: split.server };
    aardvark.start([web, client], split?.server);
    const queryFiles: Record<NameId, string> = { context: "", forwarded: "" };
    for (const id of ["context", "forwarded"] as const) {
      queryFiles[id] = join(scratch, `${id}.txt`);
      writeFileSync(queryFiles[id], `${QUERY[id]}\n`);
    }
    // Both serve both names, the right answer (and netctx's cache holds far.example from here on).
    const want = { context: web.address, forwarded: FAR.address };
    for (const server of ["netctx", "aardvark"] as const)
      for (const id of ["context", "forwarded"] as const) {
        const name = QUERY[id].split(" ")[0]!;
        let got: string[] = [];
        for (let attempt = 0; attempt < 20 && !got.includes(want[id]); attempt++) {
          got = lookup(netns, name, PORTS[server]);
          if (!got.includes(want[id])) await sleep(250);
        }
        if (!got.includes(want[id]))
          throw new Error(
            `${server} did not answer ${name} with ${want[id]} (got ${got.join(", ") || "nothing"})`,
          );
      }

    if (split) pinProcess(engine.pid, split.server);
    // Each server in a budget cgroup of its own (the same budget), so that the one not under test does not draw on it.
    const controller = rounds > 0 ? findCpuController() : undefined;
    if (controller) {
      for (const server of ["netctx", "aardvark"] as const)
        budgets[server] = new CpuBudget(
          controller,
          ROUND_BUDGET,
          `netctx-bench-dns-${process.pid}-${server}`,
        );
      budgets.netctx!.put(engine.pid);
      budgets.aardvark!.put(aardvark.pid!);
      figures.budget = { ...ROUND_BUDGET, how: budgets.netctx!.describe() };
    } else if (rounds > 0)
      problems.push("no cpu controller (cgroup v2 cpu or v1 cpu): the rounds ran without a budget");
    for (let round = 0; round < rounds; round++) {
      const order: ServerId[] = round % 2 === 0 ? ["netctx", "aardvark"] : ["aardvark", "netctx"];
      for (const server of order)
        for (const id of ["context", "forwarded"] as const) {
          const serverPid = server === "netctx" ? engine.pid : aardvark.pid!;
          const throttled0 = budgets[server]?.throttling();
          const cpu0 = { server: processCpuMs(serverPid), load: childrenCpuMs(), at: nowMs() };
          const run = await startDnsperf(
            netns,
            PORTS[server],
            queryFiles[id],
            join(scratch, "dnsperf.out"),
            [...ROUND_LOAD, "-l", String(plan.seconds)],
            split?.load,
          ).done;
          // dnsperf is the only child reaped in between: the children's CPU time grew by its own.
          run.cpu = {
            wallMs: nowMs() - cpu0.at,
            serverMs: processCpuMs(serverPid) - cpu0.server,
            loadMs: childrenCpuMs() - cpu0.load,
          };
          const throttled1 = budgets[server]?.throttling();
          if (throttled0 && throttled1 && throttled1.periods > throttled0.periods)
            run.throttledShare =
              (throttled1.throttled - throttled0.throttled) / (throttled1.periods - throttled0.periods);
          const byServer = figures.runs[server] ?? {};
          figures.runs[server] = byServer;
          byServer[id] = [...(byServer[id] ?? []), run];
          log(
            `  round ${round + 1} ${server} ${id}: ${Math.round(run.qps)} q/s, p50 ${fmt(run.p50Ms)} ms, p99 ${fmt(run.p99Ms)} ms, lost ${run.lost}, not NOERROR ${run.errors}; server ${fmt(cpuPerAnswerUs(run), 2)} us CPU an answer, busy ${percent(run.cpu.serverMs / run.cpu.wallMs)}${run.throttledShare === undefined ? "" : ` (throttled in ${percent(run.throttledShare)} of periods)`}, dnsperf ${percent(run.cpu.loadMs / run.cpu.wallMs)}`,
          );
        }
    }

    // The apply cycles run as before: no budget, every core.
    budgets.netctx?.release(engine.pid);
    budgets.aardvark?.release(aardvark.pid!);
    if (split) await unpin(split, engine, aardvark, [web, client]);

    const rate = ["-Q", String(plan.applyRate), "-c", "1", "-q", "100"];
    const scene = {
      name: "dns-bench",
      contexts: Array.from({ length: plan.applyContexts }, (_, i) => ({
        name: `a${i}`,
        level: "l2",
        networks: [NETWORK],
      })),
    };
    for (let cycle = 0; cycle < plan.applyCycles; cycle++) {
      log(
        `  netctx during an apply of ${plan.applyContexts} contexts, ${plan.applyRate} q/s offered (cycle ${cycle + 1})`,
      );
      // aardvark-dns asked beside it, the same way: a server in a process of its own that the apply does not touch,
      // so what the machine itself does to a DNS server's p99 in those seconds shows beside netctx's figure.
      const load = (server: ServerId, seconds: number) =>
        startDnsperf(netns, PORTS[server], queryFiles.context, join(scratch, `dnsperf-${server}.out`), [
          ...rate,
          "-l",
          String(seconds),
        ]);
      const beforeRuns = [load("netctx", 4), load("aardvark", 4)];
      const [before, aardvarkBefore] = await Promise.all(beforeRuns.map((r) => r.done));
      const duringRuns = [load("netctx", 600), load("aardvark", 600)];
      const [during, aardvarkDuring] = duringRuns;
      // dnsperf's first queries are on their way before the apply starts.
      await sleep(200);
      let applyMs: number;
      try {
        applyMs = await engineCall(stateDir, "POST", "/v1/apply", { scene, source: "/dns-bench.yaml" });
      } finally {
        for (const r of duringRuns) r.stop();
      }
      const a: ApplyCycle = {
        contexts: plan.applyContexts,
        rate: plan.applyRate,
        applySeconds: applyMs / 1000,
        before: before!,
        during: await during!.done,
        aardvark: { before: aardvarkBefore!, during: await aardvarkDuring!.done },
      };
      figures.applies.push(a);
      log(
        `  apply ${fmt(a.applySeconds)} s; p99 ${fmt(a.during.p99Ms)} ms during (${fmt(a.before.p99Ms)} ms before), lost ${a.during.lost}; aardvark-dns beside it ${fmt(a.aardvark.during.p99Ms)} ms (${fmt(a.aardvark.before.p99Ms)} ms before)`,
      );
      await engineCall(stateDir, "POST", "/v1/apply", { scene, op: "destroy", source: "/dns-bench.yaml" });
    }
  } catch (err) {
    problems.push((err as Error).message.split("\n")[0]!);
  } finally {
    await aardvark.stop();
    await engine?.stop();
    for (const budget of Object.values(budgets))
      try {
        budget.remove();
      } catch (err) {
        problems.push(`cleanup: ${(err as Error).message.split("\n")[0]}`);
      }
    await upstream.stop();
    const h = hostOpen ? host : Host.open(readConfig(process.env, { stateDir }));
    try {
      // Everything of this state directory: the apply's contexts too, should its destroy have failed.
      for (const c of h.store.listContexts()) removeContext(h, c.name);
      h.flushDeferred();
      removeNetwork(h, NETWORK);
    } catch (err) {
      problems.push(`cleanup: ${(err as Error).message.split("\n")[0]}`);
    } finally {
      h.close();
      rmSync(scratch, { recursive: true, force: true });
    }
  }
  return { text: render(plan, figures, problems), verdicts: verdicts(figures, problems), figures };
}

/**
 * After the rounds, both servers get every core back, as they had before this bench pinned anything: the apply
 * cycles measure netctx's worker beside the engine's main thread doing the apply, and the scheduler places them.
 * aardvark-dns starts again unpinned (its runtime sized for every core, as before).
 */
async function unpin(
  split: CoreSplit,
  engine: { pid: number },
  aardvark: Aardvark,
  contexts: { name: string; address: string }[],
): Promise<void> {
  pinProcess(engine.pid, split.all);
  await aardvark.stop();
  aardvark.start(contexts);
}

function notMeasured(plan: (typeof PLAN)["quick" | "full"], figures: DnsFigures, why: string): DnsResult {
  return { text: render(plan, figures, [why]), verdicts: verdicts(figures, [why]), figures };
}

/** Medians over rounds of one server's runs for one name. */
export function summary(runs: readonly DnsperfRun[] | undefined) {
  if (!runs?.length) return undefined;
  const pick = (f: (r: DnsperfRun) => number) => runs.map(f);
  const spread = (xs: number[]) => `${fmt(Math.min(...xs), 0)}-${fmt(Math.max(...xs), 0)}`;
  return {
    qps: median(pick((r) => r.qps)),
    qpsSpread: spread(pick((r) => r.qps)),
    p50Ms: median(pick((r) => r.p50Ms)),
    p99Ms: median(pick((r) => r.p99Ms)),
    p99Spread: `${fmt(Math.min(...pick((r) => r.p99Ms)))}-${fmt(Math.max(...pick((r) => r.p99Ms)))}`,
    lost: runs.reduce((n, r) => n + r.lost, 0),
    errors: runs.reduce((n, r) => n + r.errors, 0),
    ...(runs.every((r) => r.cpu)
      ? {
          cpuUs: median(pick(cpuPerAnswerUs)),
          serverBusy: median(pick((r) => r.cpu!.serverMs / r.cpu!.wallMs)),
          loadBusy: median(pick((r) => r.cpu!.loadMs / r.cpu!.wallMs)),
        }
      : {}),
  };
}

/** Beside a rate verdict: the servers' CPU time per answer, which the load generator's limits do not bend. */
function cpuText(netctxUs: number | undefined, aardvarkUs: number | undefined): string {
  if (netctxUs === undefined || aardvarkUs === undefined) return "";
  return `; CPU per answer ${fmt(netctxUs, 2)} against ${fmt(aardvarkUs, 2)} us (${fmt(aardvarkUs / netctxUs, 2)}x less)`;
}

/** The server's CPU time per answer of a run, in microseconds. */
function cpuPerAnswerUs(r: DnsperfRun): number {
  return r.cpu && r.answers > 0 ? (r.cpu.serverMs * 1000) / r.answers : Number.NaN;
}

const percent = (share: number) => `${Math.round(share * 100)}%`;

function verdicts(f: DnsFigures, problems: string[]): Verdict[] {
  const why = problems.join("; ") || "failed";
  const out: Verdict[] = [];
  for (const id of ["context", "forwarded"] as const) {
    const n = summary(f.runs.netctx?.[id]);
    const a = summary(f.runs.aardvark?.[id]);
    if (!n || !a) {
      out.push({ goal: GOALS[id], status: "not measured", figure: why });
      continue;
    }
    const ratio = n.qps / a.qps;
    out.push({
      goal: GOALS[id],
      status: ratio >= 1.5 && n.p99Ms <= a.p99Ms && n.errors === 0 ? "met" : "not met",
      figure: `${fmt(ratio, 2)}x (${Math.round(n.qps)} against ${Math.round(a.qps)} q/s), p99 ${fmt(n.p99Ms)} against ${fmt(a.p99Ms)} ms (medians of ${f.rounds} rounds)${cpuText(n.cpuUs, a.cpuUs)}`,
    });
  }
  const ap = f.applies;
  if (ap.length === 0) out.push({ goal: GOALS.apply, status: "not measured", figure: why });
  else {
    const during = median(ap.map((c) => c.during.p99Ms));
    const lost = ap.reduce((n, c) => n + c.during.lost, 0);
    out.push({
      goal: GOALS.apply,
      status: ap[0]!.contexts >= 500 && during <= 5 && lost === 0 ? "met" : "not met",
      figure: `p99 ${fmt(during)} ms (median of ${ap.length} ${ap.length === 1 ? "apply" : "applies"} of ${ap[0]!.contexts} contexts: ${ap.map((c) => fmt(c.during.p99Ms)).join(", ")}), lost ${lost}, at ${ap[0]!.rate} q/s; ${ap.map((c) => fmt(c.before.p99Ms)).join(", ")} ms just before each; aardvark-dns asked beside it: ${ap.map((c) => fmt(c.aardvark.during.p99Ms)).join(", ")} ms during, ${ap.map((c) => fmt(c.aardvark.before.p99Ms)).join(", ")} ms before`,
    });
  }
  return out;
}

/** How the rounds' load was made and where it ran. */
function loadText(f: DnsFigures): string {
  const load = `one thread (\`dnsperf ${ROUND_LOAD.join(" ")}\`: its sender and receiver, one socket, 100 queries outstanding)`;
  if (!f.cores)
    return `${load}, on the same cores as the servers (one CPU: nothing to pin), so the figures are partly dnsperf's`;
  const { load: l, server } = f.cores;
  return `${load}, pinned to CPU ${l} (taskset -c ${l}); the server under test on CPU ${server}, every thread of it (netctx's engine with its DNS worker: taskset -a -p -c ${server}; aardvark-dns started under taskset -c ${server}, so its tokio runtime has one worker for its one core, as the engine's worker is one thread). So each server has a core that dnsperf does not share; the upstream stub and the bench itself are not pinned${budgetText(f)}`;
}

/** How the rounds' CPU budget was set, for the notes. */
function budgetText(f: DnsFigures): string {
  const b = f.budget;
  if (!b) return ". No CPU budget (no cpu controller found): the rate may be dnsperf's";
  return `. On that core each server gets the same CPU budget, ${percent(b.share)} of one core in every ${fmt(b.periodUs / 1000, 0)} ms period (CFS bandwidth control; ${b.how}; the engine, every thread, and aardvark-dns, every thread, each in a budget cgroup of its own, moved back out before the apply cycles). So a rate is the server's capacity at that budget: server busy near ${percent(b.share)} with dnsperf well below 100% means the server set it. A throttled server waits for its next period: that wait is in both servers' p99 alike`;
}

function render(plan: (typeof PLAN)["quick" | "full"], f: DnsFigures, problems: string[]): string {
  const lines = [
    "## DNS (issue 20)",
    "",
    `netctx's DNS server and aardvark-dns 1.4 on the same bridge network (netctx on the gateway's port 53, aardvark-dns on port ${PORTS.aardvark} of the same address), serving the same names, with the same upstream (a stub server in an "outside" namespace). dnsperf 2.10 runs in the netns of a context on that network, ${plan.seconds} s a run, ${plan.rounds} rounds, each server first in every other round. Load: ${loadText(f)}. Queries per second are dnsperf's; p50 and p99 are nearest-rank percentiles of the per-answer latencies dnsperf -v prints (one line per answer, written to a file and read after the run, not piped to the bench), over every answer of a run. Each cell: the median over rounds, and the spread (min-max over rounds) that the shared 2-core machine put into it. aardvark-dns 1.4 keeps no cache: it forwards every query for the forwarded name to the upstream. The last three columns say whose rate it is: the server's CPU time (its process, every thread; the kernel's work of sending an answer on to dnsperf's socket is charged to it) per answer, and the share of the run's wall time the server and dnsperf were on a CPU. A server near 100% set the rate; dnsperf near 100% with the server well below means dnsperf did, and the ratio of the rates understates the faster server (its CPU per answer does not). Both well below 100% means neither had its core to itself: the machine's other work took the rest.`,
    "",
    "| server | name | q/s (median) | q/s spread | p50 ms | p99 ms | p99 spread | lost | not NOERROR | server CPU us an answer | server busy | dnsperf busy |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const server of ["netctx", "aardvark"] as const)
    for (const id of ["context", "forwarded"] as const) {
      const s = summary(f.runs[server]?.[id]);
      lines.push(
        s
          ? `| ${SERVER_LABEL[server]} | ${NAME_LABEL[id]} | ${Math.round(s.qps)} | ${s.qpsSpread} | ${fmt(s.p50Ms)} | ${fmt(s.p99Ms)} | ${s.p99Spread} | ${s.lost} | ${s.errors} | ${fmt(s.cpuUs, 2)} | ${s.serverBusy === undefined ? "" : percent(s.serverBusy)} | ${s.loadBusy === undefined ? "" : percent(s.loadBusy)} |`
          : `| ${SERVER_LABEL[server]} | ${NAME_LABEL[id]} | n/a | | | | | | | | | |`,
      );
    }
  const ap = f.applies;
  if (ap.length === 0) lines.push("", `The apply of ${plan.applyContexts} contexts was not measured.`);
  else
    lines.push(
      "",
      `During an apply of ${ap[0]!.contexts} l2 contexts on the same network through the engine (one POST /v1/apply to its socket; the engine's main thread does the kernel work, the DNS server answers from its worker thread), both servers unpinned again (every thread of the engine may use every core; aardvark-dns started again without taskset), dnsperf offered netctx ${ap[0]!.rate} q/s for \`web A\` (unpinned, one socket, 100 outstanding), and at the same time, from a second dnsperf, aardvark-dns the same: a server in a process of its own that the apply does not touch, so its figures show what the machine (2 cores, shared) does to any DNS server's tail in those seconds. Before each apply the same for 4 s without one; after it, a destroy of the same contexts:`,
      "",
      "| cycle | apply s | server | answers | lost | p50 ms | p99 ms | max ms | before: p50 ms | before: p99 ms | before: max ms |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
      ...ap.flatMap((c, i) =>
        (
          [
            ["netctx", c],
            ["aardvark-dns", c.aardvark],
          ] as const
        ).map(
          ([server, r]) =>
            `| ${i + 1} | ${fmt(c.applySeconds, 2)} | ${server} | ${r.during.answers} | ${r.during.lost} | ${fmt(r.during.p50Ms)} | ${fmt(r.during.p99Ms)} | ${fmt(r.during.maxMs)} | ${fmt(r.before.p50Ms)} | ${fmt(r.before.p99Ms)} | ${fmt(r.before.maxMs)} |`,
        ),
      ),
    );
  if (problems.length) lines.push("", ...problems.map((p) => `- not measured / error: ${p}`));
  return `${lines.join("\n")}\n`;
}
