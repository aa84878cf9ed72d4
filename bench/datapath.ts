/**
 * Data path cost: iperf3 single TCP stream through each kind of context, against the kernel path it builds on
 * (a raw veth pair for l2, host loopback for the shared-stack levels, whose traffic between two local addresses
 * goes through lo as well, only with the contexts' BPF programs on its sockets).
 * Runs inside the bench's throwaway host namespace (bench/run.ts re-runs itself in one).
 *
 * The paths of one group share the machine by turns: every stream is connected and stopped (SIGSTOP), then each
 * is let go (SIGCONT) in rotation, and a row's figure is the bytes its server received in the WINDOW_MS that start
 * SETTLE_MS after its client was let go, over the time they took. This VM's speed drifts by 2x over seconds (a CPU
 * loop's speed moves by a third between 100 ms windows, with no steal time to show for it), so paths measured one
 * after another differ by whatever the machine did in between; short turns see the same machine. The section's
 * text (render) gives the measurements behind both lengths: how the per-run ratios scatter with the turn, and what
 * counting from the resume did to the shared-stack rows.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmdirSync, rmSync } from "node:fs";
import { availableParallelism, endianness, tmpdir } from "node:os";
import { join } from "node:path";
import { readConfig } from "../src/config.ts";
import { createContext, removeContext } from "../src/engine/contexts.ts";
import { createNetwork, removeNetwork } from "../src/engine/networks.ts";
import { contextExecArgv } from "../src/exec/enter.ts";
import { Host } from "../src/host.ts";
import { cgroup2Root } from "../src/kernel/cgroup.ts";
import { specOf } from "../src/levels/driver.ts";
import type { ContextRecord } from "../src/model/records.ts";
import type { Verdict } from "./report.ts";
import { sleep } from "./stats.ts";
import { TcpReceived } from "./tcp-received.ts";

const FIRST_PORT = 5201;
const WINDOW_MS = 10;
/** How long a client runs in its turn before counting starts: its stream picking up again, the row before draining. */
const SETTLE_MS = 3;
const IPERF3 = "iperf3";
const RAW_NS = ["ncdp-va", "ncdp-vb"] as const;
const RAW_ADDR = ["10.231.0.1", "10.231.0.2"] as const;
const RAW_LINK = ["ncdp-a", "ncdp-b"] as const;
const PLAIN_NS = ["ncdp-ba", "ncdp-bb"] as const;
const PLAIN_ADDR = ["10.231.5.1", "10.231.5.2"] as const;
const PLAIN_BRIDGE = "ncdp-br";
type Reference = "raw" | "loopback";

export interface Row {
  label: string;
  /** Rows of one group take turns on the machine in one measurement. */
  group: "l2" | "shared";
  port: number;
  /** The server's network namespace (a path), where its socket's counters are read; undefined: this one. */
  serverNetns?: string | undefined;
  /** What the ratio is taken against; undefined for the references themselves. */
  against?: Reference;
  reference?: Reference;
  addr: string;
  /** argv prefix that runs a command where the server (resp. the client) lives. */
  server: (cmd: string[]) => string[];
  client: (cmd: string[]) => string[];
  /** Gbit/s per run (bytes over the client's running time), by run index; undefined where that run failed. */
  runs: (number | undefined)[];
  errors: string[];
}

type Ends = Pick<Row, "addr" | "server" | "client" | "serverNetns">;

interface Goal {
  row: string;
  min: number;
  against: string;
}

const GOALS: Goal[] = [
  { row: "netctx l2, bridge network", min: 0.95, against: "raw veth pair" },
  { row: "netctx socket contexts, host network", min: 0.98, against: "host loopback" },
  { row: "netctx l3 contexts, host network", min: 0.98, against: "host loopback" },
];

/**
 * Runs per group, and turns per run (1.6 s counted per row and run in full mode). A run's ratio is good to about
 * 1-2% (SD over runs), so 6 runs make a figure good to about half a percent; the l2 group, whose bridge row sits
 * closest to its goal, gets 8.
 */
const RUNS = { quick: { l2: 1, shared: 3 }, full: { l2: 8, shared: 6 } } as const;
const TURNS = { quick: 50, full: 160 } as const;

export interface DatapathResult {
  /** The section of BENCHMARKS.md. */
  text: string;
  verdicts: Verdict[];
}

export async function datapathSection(quick: boolean): Promise<DatapathResult> {
  const runs = RUNS[quick ? "quick" : "full"];
  const turns = TURNS[quick ? "quick" : "full"];
  const heading = `## Data path (iperf3, one TCP stream per path, paths in turns of ${SETTLE_MS} + ${WINDOW_MS} ms, ${runs.l2} and ${runs.shared} runs)`;
  const version = spawnSync(IPERF3, ["--version"], { encoding: "utf8" });
  if (version.error || version.status !== 0)
    return notMeasured(heading, "iperf3 is not installed (Debian package iperf3)");

  const started = Date.now();
  const loadBefore = loadAverage();
  const world = new World();
  try {
    let rows: Row[];
    try {
      rows = world.build();
    } catch (err) {
      return notMeasured(heading, `setting up the paths failed: ${(err as Error).message}`);
    }
    for (let run = 0; run < Math.max(runs.l2, runs.shared); run++)
      for (const group of ["l2", "shared"] as const) {
        if (run >= runs[group]) continue;
        const members = rows.filter((r) => r.group === group);
        let result: Map<Row, number> | undefined;
        try {
          result = await measureInTurns(members, turns);
        } catch (err) {
          for (const r of members) r.errors.push((err as Error).message.split("\n")[0]!);
        }
        for (const r of members) r.runs.push(result?.get(r));
      }
    const wall = (Date.now() - started) / 1000;
    const load = `load average (1 min) ${loadBefore} before, ${loadAverage()} after`;
    return render(heading, rows, version.stdout.split("\n")[0]!.trim(), turns, runs, wall, load);
  } finally {
    world.teardown();
  }
}

function notMeasured(heading: string, why: string): DatapathResult {
  return {
    text: `${heading}\n\nNot measured: ${why}.\n`,
    verdicts: GOALS.map((g) => ({ goal: goalText(g), status: "not measured", figure: why })),
  };
}

const goalText = (g: Goal) => `data path: ${g.row} >= ${g.min}x ${g.against}`;

/** Everything the measurement needs, made in the (throwaway) host namespace and undone in teardown. */
class World {
  private readonly stateDir = mkdtempSync(join(tmpdir(), "netctx-bench-dp-"));
  private readonly cgroupParent = join(cgroup2Root(), `netctx-bench-dp-${process.pid}`);
  private readonly previousParent = process.env.NETCTX_CGROUP_PARENT;
  private readonly host: Host;
  private readonly contexts: string[] = [];
  private readonly networks: string[] = [];
  private readonly madeNetns: string[] = [];
  private plainBridgeMade = false;

  constructor() {
    // Shared-stack contexts' cgroups go under a parent of our own: the throwaway namespace does not cover cgroups.
    process.env.NETCTX_CGROUP_PARENT = this.cgroupParent;
    this.host = Host.open(readConfig(process.env, { stateDir: this.stateDir }));
  }

  build(): Row[] {
    const plain = (cmd: string[]) => cmd;
    this.makeRawVeth();
    this.makePlainBridge();
    const bridged = this.pair("dpbr", "bridge", "10.231.1.0/24", "l2");
    const [rt1, rt2] = this.pair("dprt", "routed", "10.231.2.0/24", "l2");
    const [so1, so2] = this.pair("dpso", "host", "10.231.3.0/24", "socket");
    const [l31, l32] = this.pair("dpl3", "host", "10.231.4.0/24", "l3");
    let port = FIRST_PORT;
    const row = (label: string, group: Row["group"], ends: Ends): Row => ({
      label,
      group,
      port: port++,
      ...ends,
      runs: [],
      errors: [],
    });
    const [br1, br2] = [bridged[0]!, bridged[1]!];
    const rows: Row[] = [
      { ...row("raw veth pair", "l2", kernelEnds(RAW_NS, RAW_ADDR[0])), reference: "raw" },
      { ...row("netctx l2, bridge network", "l2", this.ends(br1, br2)), against: "raw" },
      { ...row("netctx l2, routed network", "l2", this.ends(rt1, rt2)), against: "raw" },
      {
        ...row(
          "plain bridge, two veth ports, no netctx (control)",
          "l2",
          kernelEnds(PLAIN_NS, PLAIN_ADDR[0]),
        ),
        against: "raw",
      },
    ];
    return [
      ...rows,
      {
        ...row("host loopback", "shared", { addr: "127.0.0.1", server: plain, client: plain }),
        reference: "loopback",
      },
      // Control: the same addresses with no context around either end, so the socket and l3 rows' difference to
      // it is what the cgroup and its BPF programs cost, not the address.
      {
        ...row("host, socket contexts' address, no context (control)", "shared", {
          addr: this.ends(so1, so2).addr,
          server: plain,
          client: plain,
        }),
        against: "loopback",
      },
      { ...row("netctx socket contexts, host network", "shared", this.ends(so1, so2)), against: "loopback" },
      { ...row("netctx l3 contexts, host network", "shared", this.ends(l31, l32)), against: "loopback" },
    ];
  }

  /** The server in the first context, the client in the second. */
  private ends(a: ContextRecord, b: ContextRecord): Ends {
    const addr = specOf(a).attachments[0]!.addresses[0]!.split("/")[0]!;
    const exec = (r: ContextRecord) => (cmd: string[]) => contextExecArgv(this.host, r, cmd);
    return { addr, server: exec(a), client: exec(b), serverNetns: specOf(a).netns };
  }

  private pair(
    network: string,
    driver: string,
    subnet: string,
    level: string,
  ): [ContextRecord, ContextRecord] {
    createNetwork(this.host, { name: network, driver, subnets: [subnet] });
    this.networks.push(network);
    const make = (name: string) => {
      const r = createContext(this.host, { name, level, networks: [network] });
      this.contexts.push(name);
      return r;
    };
    return [make(`${network}-a`), make(`${network}-b`)];
  }

  private makeNetns(names: readonly string[]): void {
    for (const ns of names) {
      sh(`ip netns add ${ns} && ip -n ${ns} link set lo up`);
      this.madeNetns.push(ns);
    }
  }

  private makeRawVeth(): void {
    this.makeNetns(RAW_NS);
    const [a, b] = RAW_NS;
    sh(
      [
        `ip link add ${RAW_LINK[0]} netns ${a} type veth peer name ${RAW_LINK[1]} netns ${b}`,
        ...RAW_NS.flatMap((ns, i) => [
          `ip -n ${ns} addr add ${RAW_ADDR[i]}/24 dev ${RAW_LINK[i]}`,
          `ip -n ${ns} link set ${RAW_LINK[i]} up`,
        ]),
      ].join(" && "),
    );
  }

  /** What a bridge network is made of, by hand: a bridge here, a veth from it into each of two namespaces. */
  private makePlainBridge(): void {
    this.makeNetns(PLAIN_NS);
    this.plainBridgeMade = true;
    sh(
      [
        `ip link add ${PLAIN_BRIDGE} type bridge`,
        `ip link set ${PLAIN_BRIDGE} up`,
        ...PLAIN_NS.flatMap((ns, i) => [
          `ip link add ${PLAIN_BRIDGE}${i} type veth peer name eth0 netns ${ns}`,
          `ip link set ${PLAIN_BRIDGE}${i} master ${PLAIN_BRIDGE} up`,
          `ip -n ${ns} addr add ${PLAIN_ADDR[i]}/24 dev eth0`,
          `ip -n ${ns} link set eth0 up`,
        ]),
      ].join(" && "),
    );
  }

  teardown(): void {
    const problems: string[] = [];
    const attempt = (what: string, fn: () => void) => {
      try {
        fn();
      } catch (err) {
        problems.push(`${what}: ${(err as Error).message}`);
      }
    };
    for (const name of this.contexts.reverse()) attempt(`rm ${name}`, () => removeContext(this.host, name));
    for (const name of this.networks.reverse())
      attempt(`network rm ${name}`, () => removeNetwork(this.host, name));
    for (const ns of this.madeNetns) attempt(`netns ${ns}`, () => sh(`ip netns del ${ns}`));
    if (this.plainBridgeMade) attempt(PLAIN_BRIDGE, () => sh(`ip link del ${PLAIN_BRIDGE}`));
    this.host.close();
    rmSync(this.stateDir, { recursive: true, force: true });
    attempt("cgroup parent", () => {
      try {
        rmdirSync(this.cgroupParent);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    });
    if (this.previousParent === undefined) delete process.env.NETCTX_CGROUP_PARENT;
    else process.env.NETCTX_CGROUP_PARENT = this.previousParent;
    if (problems.length) console.error(`datapath teardown: ${problems.join("; ")}`);
  }
}

/** The server in the first of two namespaces made by hand, the client in the second. */
export function kernelEnds(netns: readonly [string, string], addr: string): Ends {
  const [server, client] = netns.map((ns) => `/run/netns/${ns}`) as [string, string];
  const inNetns = (path: string) => (cmd: string[]) => ["nsenter", `--net=${path}`, "--", ...cmd];
  return { addr, server: inNetns(server), client: inNetns(client), serverNetns: server };
}

/**
 * Client and server each on a CPU of their own, the same two in every row. Left to the scheduler, the two ends
 * share one core in some runs and not in others: on 2 cores the same path then reads 10 or 24 Gbit/s.
 */
function affinity(cpu: number): string[] {
  return availableParallelism() > 1 ? ["-A", String(cpu)] : [];
}

/**
 * One measurement of a group: a one-off server and a client per row, all connected, then stopped; each client runs
 * for settleMs + windowMs in turn (the order rotating each turn, so no row always follows the same one), `turns`
 * times. Returns each row's Gbit/s: the bytes its server received in the windowMs parts, over their time. What a
 * stopped client had in flight arrives while the next row settles and counts for nobody.
 */
export async function measureInTurns(
  rows: Row[],
  turns: number,
  windowMs = WINDOW_MS,
  settleMs = SETTLE_MS,
): Promise<Map<Row, number>> {
  const servers: Spawned[] = [];
  const clients: Spawned[] = [];
  const readers = rows.map(
    (row) => new TcpReceived(row.serverNetns, row.addr.includes(":") ? 6 : 4, row.port),
  );
  const received = (i: number) => readers[i]!.bytes();
  try {
    for (const row of rows) {
      const server = start(
        row.server([IPERF3, "-s", "-1", "-B", row.addr, "-p", String(row.port), ...affinity(1)]),
      );
      servers.push(server);
      await waitListening(server, row.addr, row.port);
    }
    for (const row of rows) {
      // Long enough never to end by itself; the client is ended below.
      const seconds = Math.ceil((turns * rows.length * windowMs) / 1000) + 60;
      const argv = [IPERF3, "-c", row.addr, "-p", String(row.port), "-t", String(seconds), ...affinity(0)];
      clients.push(start(row.client(argv)));
    }
    await Promise.all(rows.map((row, i) => waitStreaming(row, clients[i]!, readers[i]!)));
    for (const c of clients) c.signal("SIGSTOP");
    const bytes = rows.map(() => 0);
    const running = rows.map(() => 0);
    for (let turn = 0; turn < turns; turn++)
      for (let k = 0; k < rows.length; k++) {
        const i = (turn + k) % rows.length;
        clients[i]!.signal("SIGCONT");
        if (settleMs > 0) await sleep(settleMs);
        const b0 = received(i);
        const t0 = process.hrtime.bigint();
        await sleep(windowMs);
        const b1 = received(i);
        running[i]! += Number(process.hrtime.bigint() - t0) / 1e9;
        clients[i]!.signal("SIGSTOP");
        bytes[i]! += b1 - b0;
      }
    return new Map(rows.map((row, i) => [row, (bytes[i]! * 8) / running[i]! / 1e9]));
  } finally {
    for (const c of clients) c.signal("SIGCONT");
    await Promise.all(clients.map((c) => c.end()));
    // -1 makes a server leave when its client has gone; one that is still there is ours to end.
    await Promise.all(servers.map((s) => s.end(2000)));
    for (const r of readers) r.close();
  }
}

/** A process of ours in a process group of its own, so a signal reaches the command behind any wrapper. */
interface Spawned {
  child: ChildProcess;
  exit: Promise<number | null>;
  stderr: () => string;
  signal(sig: NodeJS.Signals): void;
  /** Waits `graceMs` for it to leave by itself, then sends SIGTERM and waits. */
  end(graceMs?: number): Promise<void>;
}

function start(argv: string[]): Spawned {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"], detached: true });
  let stderr = "";
  child.stderr?.on("data", (d) => {
    stderr += d;
  });
  const exit = exited(child);
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const signal = (sig: NodeJS.Signals) => {
    if (gone() || child.pid === undefined) return;
    try {
      process.kill(-child.pid, sig);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  };
  return {
    child,
    exit,
    stderr: () => stderr,
    signal,
    async end(graceMs = 0) {
      if (gone()) return;
      if (graceMs && (await Promise.race([exit.then(() => true), sleep(graceMs).then(() => false)]))) return;
      signal("SIGTERM");
      await exit;
    },
  };
}

/** Until the row's server has received data on its test connection (iperf3 connects its control channel first). */
async function waitStreaming(row: Row, client: Spawned, reader: TcpReceived): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (client.child.exitCode !== null)
      throw new Error(`iperf3 client to ${row.addr} exited: ${client.stderr().trim()}`);
    if (reader.findStream()) return;
    if (Date.now() > deadline) throw new Error(`iperf3 client to ${row.addr} sent nothing in 10 s`);
    await sleep(20);
  }
}

/**
 * Ready when the server's own netns shows a listening socket on addr:port. A probe connect would not do: iperf3
 * -1 takes the first connection as its one test and exits when it closes.
 */
async function waitListening(server: Spawned, addr: string, port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  const want = `${procNetAddr(addr)}:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (;;) {
    if (server.child.exitCode !== null)
      throw new Error(`iperf3 server on ${addr} exited: ${server.stderr().trim()}`);
    if (listening(server.child.pid!, want)) return;
    if (Date.now() > deadline) throw new Error(`iperf3 server on ${addr} not listening after 10 s`);
    await sleep(10);
  }
}

/** /proc/net/tcp prints an IPv4 address as the 32-bit word in host byte order. */
function procNetAddr(ip: string): string {
  const bytes = ip.split(".").map(Number);
  if (endianness() === "LE") bytes.reverse();
  return bytes.map((b) => b.toString(16).toUpperCase().padStart(2, "0")).join("");
}

function listening(pid: number, localHex: string): boolean {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/net/tcp`, "utf8");
  } catch {
    return false;
  }
  // st 0A is TCP_LISTEN
  return text.split("\n").some((line) => {
    const f = line.trim().split(/\s+/);
    return f[1] === localHex && f[3] === "0A";
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    child.once("error", () => resolve(null));
    child.once("close", (code) => resolve(code));
  });
}

function sh(script: string): void {
  const r = spawnSync("sh", ["-c", script], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${script}: ${r.stderr.trim()}`);
}

function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const meanOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

const measured = (r: Row): number[] => r.runs.filter((g): g is number => g !== undefined);

/**
 * A row's per-run ratios to the reference measured in the same run, moments apart: load from elsewhere on the
 * machine moves both alike, so the pairs scatter less than two medians would.
 */
function pairedRatios(r: Row, ref: Row): number[] {
  return r.runs.flatMap((g, i) => {
    const base = ref.runs[i];
    return g !== undefined && base ? [g / base] : [];
  });
}

/**
 * One ratio from a row's per-run ratios: their geometric mean, leaving out the highest and the lowest once there are
 * five or more. The runs scatter evenly around the truth, where a mean makes better use of them than a median (a
 * fifth less spread); without the extremes, one odd run cannot move it far. `error` is its standard error (as a
 * ratio), from the spread of all the runs.
 */
export function combinedRatio(ratios: number[]): { ratio: number; error?: number } | undefined {
  if (ratios.length === 0) return undefined;
  const logs = ratios.map(Math.log).sort((a, b) => a - b);
  const kept = logs.length >= 5 ? logs.slice(1, -1) : logs;
  const ratio = Math.exp(meanOf(kept));
  if (logs.length < 2) return { ratio };
  // The kept runs alone, their extremes cut off, would understate the spread.
  const all = meanOf(logs);
  const variance = logs.reduce((a, b) => a + (b - all) ** 2, 0) / (logs.length - 1);
  return { ratio, error: ratio * Math.sqrt(variance / logs.length) };
}

function loadAverage(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ")[0] ?? "?";
}

function render(
  heading: string,
  rows: Row[],
  version: string,
  turns: number,
  runs: { l2: number; shared: number },
  wallSeconds: number,
  load: string,
): DatapathResult {
  const refRow = (ref: Reference) => rows.find((r) => r.reference === ref)!;
  const combinedOf = (r: Row) => (r.against ? combinedRatio(pairedRatios(r, refRow(r.against))) : undefined);
  const ratioOf = (r: Row): number | undefined => combinedOf(r)?.ratio;
  const withError = (r: Row) => {
    const c = combinedOf(r);
    return c?.error === undefined ? fmt(c?.ratio, 3) : `${fmt(c.ratio, 3)} ± ${fmt(c.error, 3)}`;
  };
  const fmt = (x: number | undefined, digits: number) => (x === undefined ? "n/a" : x.toFixed(digits));
  const list = (xs: number[], digits: number) => xs.map((x) => x.toFixed(digits)).join(", ") || "none";
  const table = [
    "| path | Gbit/s (median) | Gbit/s per run | ratio | ratio per run | against |",
    "|---|---|---|---|---|---|",
    ...rows.map((r) => {
      const failed = r.errors.length ? ` (${r.errors.length} failed: ${r.errors[0]})` : "";
      const perRun = r.against ? list(pairedRatios(r, refRow(r.against)), 3) : "";
      const against = r.against ? refRow(r.against).label : "(reference)";
      return `| ${r.label} | ${fmt(median(measured(r)), 2)} | ${list(measured(r), 2)}${failed} | ${withError(r)} | ${perRun} | ${against} |`;
    }),
  ].join("\n");
  const verdicts: Verdict[] = GOALS.map((g) => {
    const row = rows.find((r) => r.label === g.row);
    const ratio = row ? ratioOf(row) : undefined;
    const per = row?.against ? pairedRatios(row, refRow(row.against)) : [];
    const spread = per.length > 1 ? `; runs ${fmt(Math.min(...per), 3)} to ${fmt(Math.max(...per), 3)}` : "";
    return {
      goal: goalText(g),
      status: ratio === undefined ? "not measured" : ratio >= g.min ? "met" : "not met",
      figure: `${row ? withError(row) : "n/a"}x${spread}`,
    };
  });
  const goals = verdicts.map((v) => `- ${v.goal}: **${v.status}** (${v.figure})`).join("\n");
  const text = `${heading}\n\n${version}. Each row: \`iperf3 -s -1 -B ADDR -p PORT\` where the row says, the client (\`-c ADDR -p PORT\`) in
the other end. The l2 rows go between two contexts' namespaces and are compared with a raw veth pair between two
namespaces; the socket and l3 rows run both ends through \`netctx exec\` (confined to the contexts' cgroups, BPF
programs attached) and talk between the two contexts' addresses on the host, so they are compared with host
loopback. Networks use their defaults (anti-spoofing on). The rows of a group (l2 rows; host rows) are measured
together, by turns: all their streams connect, their clients are stopped (SIGSTOP), then each client runs for
${SETTLE_MS} + ${WINDOW_MS} ms in turn, ${turns} turns each, in an order that rotates every turn. A row's Gbit/s is the bytes its
server received in the ${WINDOW_MS} ms parts (tcpi_bytes_received of its test connection, read through sock_diag at both
ends of each part) over their time: the first ${SETTLE_MS} ms are its stream picking up again after the pause (counted
from the moment the client resumes, l3 contexts read 0.978 against loopback instead of 0.997, socket contexts 0.991
instead of 0.999, in 6 interleaved runs each; the l2 rows do not move) and the previous row's data in flight arriving.
Its ratio is the geometric
mean of its per-run ratios to the reference of its group (${runs.l2} runs of the l2 rows, ${runs.shared} of the host rows),
without the highest and the lowest when there are 5 or more; ± is its standard error from the spread of all the runs.
Turns this short put every path on the same machine: measured one after another for seconds, the same pinned raw
veth pair reads anywhere between 9 and 25 Gbit/s on this VM, and per-run ratios of the old sequential runs spread
from 0.5 to 2. In turns, the bridge row's per-run ratio scatters with an SD of 0.06 at 50 ms turns, 0.02 at 20 ms
and 0.01-0.016 at 10 ms (no better at 5 ms); interleaved runs of 10 and 50 ms turns read the same figures (bridge
0.970 and 0.971, plain bridge 0.784 and 0.795, a second raw veth pair against the first 1.003). Client and server
are pinned to CPUs 0 and 1 (\`-A\`) in every row. The bridge row's frames go from one
context's port straight into the other context (the bridge shortcut, bpf_redirect_peer); the control row is what a
bridge network is without it, made by hand: a bridge and two veth ports, every frame through the bridge and, as
this kernel has br_netfilter built in and on in every namespace, through the inet hooks and conntrack.

${table}

Goals:
${goals}

Wall time of this section: ${wallSeconds.toFixed(1)} s; ${load} (on a busy machine the per-run ratios scatter:
read a verdict together with its spread).
`;
  return { text, verdicts };
}
