/**
 * Data path cost: iperf3 single TCP stream through each kind of context, against the kernel path it builds on
 * (a raw veth pair for l2, host loopback for the shared-stack levels, whose traffic between two local addresses
 * goes through lo as well, only with the contexts' BPF programs on its sockets).
 * Runs inside the bench's throwaway host namespace (bench/run.ts re-runs itself in one).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmdirSync, rmSync } from "node:fs";
import { availableParallelism, endianness, tmpdir } from "node:os";
import { join } from "node:path";
import { createContext, removeContext } from "../src/engine/contexts.ts";
import { createNetwork, removeNetwork } from "../src/engine/networks.ts";
import { Host } from "../src/host.ts";
import { cgroup2Root } from "../src/kernel/cgroup.ts";
import { specOf } from "../src/levels/driver.ts";
import { levelDriver } from "../src/levels/registry.ts";
import type { ContextRecord } from "../src/state/store.ts";

const PORT = 5201;
const IPERF3 = "iperf3";
const RAW_NS = ["ncdp-va", "ncdp-vb"] as const;
const RAW_ADDR = ["10.231.0.1", "10.231.0.2"] as const;
const RAW_LINK = ["ncdp-a", "ncdp-b"] as const;

type Reference = "raw" | "loopback";

interface Row {
  label: string;
  /** What the ratio is taken against; undefined for the references themselves. */
  against?: Reference;
  reference?: Reference;
  addr: string;
  /** argv prefix that runs a command where the server (resp. the client) lives. */
  server: (cmd: string[]) => string[];
  client: (cmd: string[]) => string[];
  /** Gbit/s per run, by run index; undefined where that run failed. */
  runs: (number | undefined)[];
  errors: string[];
}

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

export async function datapathSection(quick: boolean): Promise<string> {
  // This VM's throughput swings between 9 and 25 Gbit/s from one half second to the next on an idle machine (the
  // same raw veth pair, pinned): more short paired runs give the median ratio something to stand on; 3 runs of
  // 5 s gave per-run ratios from 0.68 to 1.33.
  const runs = quick ? 1 : 7;
  const seconds = 2;
  const heading = `## Data path (iperf3, one TCP stream, ${seconds} s, ${runs === 1 ? "1 run" : `median of ${runs} runs`})`;
  const version = spawnSync(IPERF3, ["--version"], { encoding: "utf8" });
  if (version.error || version.status !== 0)
    return `${heading}\n\nNot measured: iperf3 is not installed (Debian package iperf3).\n`;

  const started = Date.now();
  const loadBefore = loadAverage();
  const world = new World();
  try {
    let rows: Row[];
    try {
      rows = world.build();
    } catch (err) {
      return `${heading}\n\nNot measured: setting up the paths failed: ${(err as Error).message}\n`;
    }
    for (let run = 0; run < runs; run++)
      for (const row of rows) {
        let gbps: number | undefined;
        try {
          gbps = await measure(row, seconds);
        } catch (err) {
          row.errors.push((err as Error).message.split("\n")[0]!);
        }
        row.runs.push(gbps);
      }
    const wall = (Date.now() - started) / 1000;
    const load = `load average (1 min) ${loadBefore} before, ${loadAverage()} after`;
    return render(heading, rows, version.stdout.split("\n")[0]!.trim(), wall, load);
  } finally {
    world.teardown();
  }
}

/** Everything the measurement needs, made in the (throwaway) host namespace and undone in teardown. */
class World {
  private readonly stateDir = mkdtempSync(join(tmpdir(), "netctx-bench-dp-"));
  private readonly cgroupParent = join(cgroup2Root(), `netctx-bench-dp-${process.pid}`);
  private readonly previousParent = process.env.NETCTX_CGROUP_PARENT;
  private readonly host: Host;
  private readonly contexts: string[] = [];
  private readonly networks: string[] = [];
  private rawMade = false;

  constructor() {
    this.host = Host.open(this.stateDir);
    // Shared-stack contexts' cgroups go under a parent of our own: the throwaway namespace does not cover cgroups.
    process.env.NETCTX_CGROUP_PARENT = this.cgroupParent;
  }

  build(): Row[] {
    const plain = (cmd: string[]) => cmd;
    const inNetns = (name: string) => (cmd: string[]) => [
      "nsenter",
      `--net=/run/netns/${name}`,
      "--",
      ...cmd,
    ];
    this.makeRawVeth();
    const [br1, br2] = this.pair("dpbr", "bridge", "10.231.1.0/24", "l2");
    const [rt1, rt2] = this.pair("dprt", "routed", "10.231.2.0/24", "l2");
    const [so1, so2] = this.pair("dpso", "host", "10.231.3.0/24", "socket");
    const [l31, l32] = this.pair("dpl3", "host", "10.231.4.0/24", "l3");
    const row = (label: string, addr: string, server: Row["server"], client: Row["client"]): Row => ({
      label,
      addr,
      server,
      client,
      runs: [],
      errors: [],
    });
    return [
      {
        ...row("raw veth pair", RAW_ADDR[0], inNetns(RAW_NS[0]), inNetns(RAW_NS[1])),
        reference: "raw",
      },
      { ...row("netctx l2, bridge network", ...this.ends(br1, br2)), against: "raw" },
      { ...row("netctx l2, routed network", ...this.ends(rt1, rt2)), against: "raw" },
      { ...row("host loopback", "127.0.0.1", plain, plain), reference: "loopback" },
      // Control: the same addresses with no context around either end, so the socket and l3 rows' difference to
      // it is what the cgroup and its BPF programs cost, not the address.
      {
        ...row("host, socket contexts' address, no context (control)", this.ends(so1, so2)[0], plain, plain),
        against: "loopback",
      },
      { ...row("netctx socket contexts, host network", ...this.ends(so1, so2)), against: "loopback" },
      { ...row("netctx l3 contexts, host network", ...this.ends(l31, l32)), against: "loopback" },
    ];
  }

  /** Server address and exec prefixes: the server in the first context, the client in the second. */
  private ends(a: ContextRecord, b: ContextRecord): [string, Row["server"], Row["client"]] {
    const addr = specOf(a).attachments[0]!.addresses[0]!.split("/")[0]!;
    const exec = (r: ContextRecord) => (cmd: string[]) => levelDriver(r.level).execArgv(r, cmd);
    return [addr, exec(a), exec(b)];
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

  private makeRawVeth(): void {
    this.rawMade = true;
    const [a, b] = RAW_NS;
    sh(
      [
        `ip netns add ${a}`,
        `ip netns add ${b}`,
        `ip link add ${RAW_LINK[0]} netns ${a} type veth peer name ${RAW_LINK[1]} netns ${b}`,
        ...RAW_NS.flatMap((ns, i) => [
          `ip -n ${ns} addr add ${RAW_ADDR[i]}/24 dev ${RAW_LINK[i]}`,
          `ip -n ${ns} link set lo up`,
          `ip -n ${ns} link set ${RAW_LINK[i]} up`,
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
    if (this.rawMade)
      for (const ns of RAW_NS) attempt(`netns ${ns}`, () => sh(`ip netns del ${ns} 2>/dev/null || true`));
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

/**
 * Client and server each on a CPU of their own, the same two in every row. Left to the scheduler, the two ends
 * share one core in some runs and not in others: on 2 cores the same path then reads 10 or 24 Gbit/s.
 */
function affinity(cpu: number): string[] {
  return availableParallelism() > 1 ? ["-A", String(cpu)] : [];
}

/** One iperf3 run: a one-off server where the row says, a client where it says; Gbit/s the server received. */
async function measure(row: Row, seconds: number): Promise<number> {
  const argv = row.server([IPERF3, "-s", "-1", "-B", row.addr, "-p", String(PORT), ...affinity(1)]);
  const server = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
  let serverErr = "";
  server.stderr?.on("data", (d) => {
    serverErr += d;
  });
  const serverExit = exited(server);
  try {
    await waitListening(server, row.addr, PORT, serverExit, () => serverErr);
    const cargv = row.client([
      IPERF3,
      "-c",
      row.addr,
      "-p",
      String(PORT),
      "-t",
      String(seconds),
      "-J",
      ...affinity(0),
    ]);
    const out = await collect(cargv);
    let report: { error?: string; end?: { sum_received?: { bits_per_second?: number } } };
    try {
      report = JSON.parse(out.stdout) as typeof report;
    } catch {
      throw new Error(`iperf3 client exited ${out.code}: ${out.stderr.trim() || out.stdout.trim()}`);
    }
    const bps = report.end?.sum_received?.bits_per_second;
    if (report.error || bps === undefined) throw new Error(`iperf3 client: ${report.error ?? "no result"}`);
    return bps / 1e9;
  } finally {
    // -1 makes the server leave after its one test; one that is still there (a failed client) is ours to end.
    if (server.exitCode === null && server.signalCode === null) {
      const done = await Promise.race([serverExit.then(() => true), delay(2000).then(() => false)]);
      if (!done) {
        server.kill("SIGTERM");
        await serverExit;
      }
    }
  }
}

/**
 * Ready when the server's own netns shows a listening socket on addr:port. A probe connect would not do: iperf3
 * -1 takes the first connection as its one test and exits when it closes.
 */
async function waitListening(
  server: ChildProcess,
  addr: string,
  port: number,
  serverExit: Promise<number | null>,
  stderr: () => string,
): Promise<void> {
  let gone = false;
  void serverExit.then(() => {
    gone = true;
  });
  const deadline = Date.now() + 10_000;
  const want = `${procNetAddr(addr)}:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (;;) {
    if (gone) throw new Error(`iperf3 server on ${addr} exited: ${stderr().trim()}`);
    if (listening(server.pid!, want)) return;
    if (Date.now() > deadline) throw new Error(`iperf3 server on ${addr} not listening after 10 s`);
    await delay(10);
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

function collect(argv: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => {
    stdout += d;
  });
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  return exited(child).then((code) => ({ code, stdout, stderr }));
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
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

const measured = (r: Row): number[] => r.runs.filter((g): g is number => g !== undefined);

/**
 * A row's ratio is the median of its per-run ratios to the reference measured in the same round, moments
 * apart: load from elsewhere on the machine moves both alike, so the pairs scatter less than two medians would.
 */
function pairedRatios(r: Row, ref: Row): number[] {
  return r.runs.flatMap((g, i) => {
    const base = ref.runs[i];
    return g !== undefined && base ? [g / base] : [];
  });
}

function loadAverage(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ")[0] ?? "?";
}

function render(heading: string, rows: Row[], version: string, wallSeconds: number, load: string): string {
  const refRow = (ref: Reference) => rows.find((r) => r.reference === ref)!;
  const ratioOf = (r: Row): number | undefined =>
    r.against ? median(pairedRatios(r, refRow(r.against))) : undefined;
  const fmt = (x: number | undefined, digits: number) => (x === undefined ? "n/a" : x.toFixed(digits));
  const list = (xs: number[], digits: number) => xs.map((x) => x.toFixed(digits)).join(", ") || "none";
  const table = [
    "| path | Gbit/s (median) | Gbit/s per run | ratio | ratio per run | against |",
    "|---|---|---|---|---|---|",
    ...rows.map((r) => {
      const failed = r.errors.length ? ` (${r.errors.length} failed: ${r.errors[0]})` : "";
      const perRun = r.against ? list(pairedRatios(r, refRow(r.against)), 3) : "";
      const against = r.against ? refRow(r.against).label : "(reference)";
      return `| ${r.label} | ${fmt(median(measured(r)), 2)} | ${list(measured(r), 2)}${failed} | ${fmt(ratioOf(r), 3)} | ${perRun} | ${against} |`;
    }),
  ].join("\n");
  const goals = GOALS.map((g) => {
    const row = rows.find((r) => r.label === g.row);
    const ratio = row ? ratioOf(row) : undefined;
    const verdict = ratio === undefined ? "not measured" : ratio >= g.min ? "met" : "not met";
    const per = row?.against ? pairedRatios(row, refRow(row.against)) : [];
    const spread = per.length > 1 ? `; runs ${fmt(Math.min(...per), 3)} to ${fmt(Math.max(...per), 3)}` : "";
    return `- ${g.row} >= ${g.min}x ${g.against}: **${verdict}** (${fmt(ratio, 3)}x${spread})`;
  }).join("\n");
  return `${heading}

${version}. Each row: \`iperf3 -s -1 -B ADDR\` where the row says, the client (\`-c ADDR -J\`) in the other
end; the figure is what the server received. The l2 rows go between two contexts' namespaces and are compared with
a raw veth pair between two namespaces; the socket and l3 rows run both ends through \`netctx exec\` (confined to
the contexts' cgroups, BPF programs attached) and talk between the two contexts' addresses on the host, so they are
compared with host loopback. Networks use their defaults (anti-spoofing on). Rows are interleaved run by run, so
drift in machine load hits every row alike, and a ratio is the median of the per-run ratios to the reference
measured in the same round. Client and server are pinned to CPUs 0 and 1 (\`-A\`) in every row.

${table}

Goals:
${goals}

Wall time of this section: ${wallSeconds.toFixed(1)} s; ${load} (on a busy machine the per-run ratios scatter:
read a verdict together with its spread).
`;
}
