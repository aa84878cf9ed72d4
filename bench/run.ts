/**
 * npm run bench [-- --quick]: netctx side by side with its peers in one run, inside a throwaway host namespace
 * (each peer in a nested one of its own). Installs nothing: the peers come from ../shared/peers/setup.sh (Debian
 * containernetworking-plugins, netavark, iptables); a missing peer is reported, never faked.
 * Writes BENCHMARKS.md, bench/results.json and bench/setup-vs-n.png.
 * Full mode stays under 10 minutes on a 2-core machine, --quick under 2, plus the overlay, policy, counters, DNS and
 * CLI-start sections' time (overlay ~1 min, ~20 s; policy ~2-3 min at 1000 contexts, ~40 s; counters ~2 min, ~1 min;
 * DNS ~1.5 min, ~40 s; CLI start ~60 s, ~20 s): each peer's extent is cut to the time left.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { cgroup2Root } from "../src/kernel/cgroup.ts";
import { insideSandbox, sandboxArgv } from "../src/sandbox.ts";
import { APPLY_WALKS, applyWalk } from "./apply-walks.ts";
import { type BpfHookOptions, type BpfHookSamples, measureBpfHooks } from "./bpf-hooks.ts";
import { type CliStartResult, cliStartSection } from "./cli-start.ts";
import { type CountersResult, countersSection } from "./counters.ts";
import { type DatapathResult, datapathSection } from "./datapath.ts";
import { type DnsResult, dnsSection } from "./dns.ts";
import { KERNEL_FLOOR, kernelFloorPath } from "./kernel-floor.ts";
import { L2_PATHS, type L2Cell, type L2Memory, type L2PathId, netctxL2Walk } from "./l2-lifecycle.ts";
import { type KernelReading, settleNetns } from "./memory.ts";
import { type OverlayResult, overlaySection } from "./overlay.ts";
import { PEERS, type PeerId, runPeer } from "./peers.ts";
import { writeSetupPlot } from "./plot.ts";
import { type PolicyResult, policySection } from "./policy.ts";
import { type Measured, walk } from "./population.ts";
import {
  type BenchData,
  benchmarksMarkdown,
  goalLines,
  LIBRARY,
  type NotMeasured,
  REFERENCE,
  results,
} from "./report.ts";

if (!insideSandbox(process.env)) {
  const argv = sandboxArgv([process.execPath, ...process.execArgv, ...process.argv.slice(1)]);
  const r = spawnSync(argv[0]!, argv.slice(1), { stdio: "inherit" });
  process.exit(r.status ?? 1);
}

const ROOT = join(import.meta.dirname, "..");
const quick = process.argv.includes("--quick");
const started = Date.now();
const elapsed = () => (Date.now() - started) / 1000;
const log = (line: string) => console.log(`[${elapsed().toFixed(0).padStart(3)} s] ${line}`);

interface PeerPlan {
  id: PeerId;
  ns: number[];
  k: number;
}

/**
 * The matrix. netctx fills its population through the library (cheap and the same state), so it reaches N=1000
 * in every full run; the peers fill through themselves (their iptables state is what grows), at 0.05-0.2 s per
 * container, so their extent is what the time budget decides: bridge + ipMasq first (the reference), and every
 * later peer keeps at least its smallest N.
 */
const PLAN = quick
  ? {
      budgetSeconds: 95,
      l2Ns: [30, 100],
      netctx: [
        {
          n: 30,
          paths: [
            { id: "library", k: 20 },
            { id: "cniEngine", k: 20 },
            { id: "cniExec", k: 5 },
            { id: "cliEngine", k: 5 },
            { id: "cli", k: 5 },
          ],
        },
        {
          n: 100,
          paths: [
            { id: "library", k: 20 },
            { id: "cniEngine", k: 20 },
          ],
        },
      ] as L2Cell[],
      peers: [
        { id: "bridge-masq", ns: [30, 100], k: 15 },
        { id: "bridge-nomasq", ns: [30, 100], k: 15 },
        { id: "ptp-masq", ns: [30], k: 15 },
        { id: "netavark", ns: [30], k: 15 },
      ] as PeerPlan[],
      shared: { ns: [30, 100], k: 20 },
      bpf: { cycles: 500, calls: 100 },
    }
  : {
      budgetSeconds: 570,
      l2Ns: [100, 500, 1000],
      netctx: [
        {
          n: 100,
          paths: [
            { id: "library", k: 50 },
            { id: "cniEngine", k: 50 },
            { id: "cniExec", k: 10 },
            { id: "cliEngine", k: 10 },
            { id: "cli", k: 10 },
          ],
        },
        {
          n: 500,
          paths: [
            { id: "library", k: 50 },
            { id: "cniEngine", k: 50 },
          ],
        },
        {
          n: 1000,
          paths: [
            { id: "library", k: 50 },
            { id: "cniEngine", k: 50 },
            { id: "cniExec", k: 10 },
            { id: "cliEngine", k: 10 },
            { id: "cli", k: 10 },
          ],
        },
      ] as L2Cell[],
      peers: [
        { id: "bridge-masq", ns: [100, 500, 1000], k: 50 },
        { id: "bridge-nomasq", ns: [100, 500, 1000], k: 50 },
        { id: "ptp-masq", ns: [100, 500], k: 50 },
        { id: "netavark", ns: [100, 500], k: 50 },
      ] as PeerPlan[],
      shared: { ns: [100, 1000], k: 50 },
      bpf: { cycles: 1500, calls: 100 },
    };

/** Seconds per container (add, remove) seen on this machine up to N=1000, with headroom for load. */
const PEER_COST: Record<PeerId, { add: number; remove: number }> = {
  "bridge-masq": { add: 0.1, remove: 0.14 },
  "bridge-nomasq": { add: 0.045, remove: 0.065 },
  "ptp-masq": { add: 0.07, remove: 0.12 },
  netavark: { add: 0.09, remove: 0.07 },
};
const PEER_STARTUP = 4;

function peerSeconds(p: PeerPlan): number {
  const c = PEER_COST[p.id];
  const maxN = Math.max(...p.ns);
  return PEER_STARTUP + (maxN + p.k * (p.ns.length - 1)) * c.add + p.k * p.ns.length * c.remove;
}

/** dpkg-query's field syntax, which only looks like a template placeholder. */
const DPKG_VERSION = "$" + "{Version}";

function version(pkg: string): string {
  const r = spawnSync("dpkg-query", ["-W", "-f", DPKG_VERSION, pkg], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : "not installed";
}

function machine(): string[] {
  const os = (() => {
    try {
      return `Debian ${readFileSync("/etc/debian_version", "utf8").trim()}`;
    } catch {
      return "Linux";
    }
  })();
  const kernel = spawnSync("uname", ["-r"], { encoding: "utf8" }).stdout.trim();
  return [
    `Machine: ${cpus().length} x ${cpus()[0]?.model.trim() ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ${os}, kernel ${kernel}, node ${process.version}.`,
    `Peers: containernetworking-plugins ${version("containernetworking-plugins")}, netavark ${version("netavark")}, iptables ${version("iptables")}.`,
    `Load average at the start: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")} (the machine is shared; other work shows up as noise).`,
  ];
}

/** cgroup directories are removed with rmdir, bottom-up. */
function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true }))
    if (e.isDirectory()) removeCgroupTree(join(dir, e.name));
  try {
    rmdirSync(dir);
  } catch (err) {
    console.error(`warning: could not remove bench cgroup ${dir}: ${(err as Error).message}`);
  }
}

const cgroupParent = join(cgroup2Root(), `netctx-bench-${process.pid}`);
process.env.NETCTX_CGROUP_PARENT = cgroupParent;
const notMeasured: NotMeasured[] = [];
const l2Rows: Measured[] = [];
const sharedRows: Measured[] = [];
const kernel: { label: string; reading: KernelReading }[] = [];
const iptablesRules: Record<string, number> = {};
let l2Memory: L2Memory | undefined;
let bpf: ({ samples: BpfHookSamples } & BpfHookOptions) | undefined;
let datapath: DatapathResult | undefined;
let overlay: OverlayResult | undefined;
let policy: PolicyResult | undefined;
let counters: CountersResult | undefined;
let dns: DnsResult | undefined;
let cliStart: CliStartResult | undefined;
const why = (err: unknown) => (err instanceof Error ? err.message : String(err)).split("\n")[0]!;

try {
  log(`mode ${quick ? "quick" : "full"}, time budget ${PLAN.budgetSeconds} s`);
  await settleNetns();

  // netctx l2: one population through the library, every front end measured against it.
  let netctxCells = PLAN.netctx;
  if (spawnSync("sh", ["-c", "command -v curl"]).status !== 0) {
    notMeasured.push({
      label: L2_PATHS.cniEngine,
      why: "curl is not installed: the CNI launcher reaches the engine through curl (apt-get install curl)",
    });
    netctxCells = netctxCells.map((c) => ({ ...c, paths: c.paths.filter((p) => p.id !== "cniEngine") }));
  }
  log("netctx l2 walk");
  try {
    const l2 = await netctxL2Walk(netctxCells, log);
    l2Rows.push(...l2.walk.rows);
    for (const f of l2.walk.failures) notMeasured.push({ label: f.label, n: f.n, why: `failed: ${f.error}` });
    l2Memory = l2.memory;
    kernel.push({ label: "netctx l2 (library population)", reading: l2.memory.kernel });
  } catch (err) {
    notMeasured.push({ label: "netctx l2 paths", why: `the walk failed: ${why(err)}` });
  }
  await settleNetns();

  log("kernel floor walk");
  try {
    const floor = kernelFloorPath();
    try {
      const w = walk(
        floor,
        PLAN.shared.ns.map((n) => ({ n, paths: [{ path: floor, k: PLAN.shared.k }] })),
        { log },
      );
      l2Rows.push(...w.rows);
      for (const f of w.failures) notMeasured.push({ label: f.label, n: f.n, why: `failed: ${f.error}` });
    } finally {
      floor.close();
    }
  } catch (err) {
    notMeasured.push({ label: KERNEL_FLOOR, why: `the walk failed: ${why(err)}` });
  }
  await settleNetns();

  for (const id of ["routed", "socket", "l3"] as const) {
    log(`netctx ${id} walk`);
    try {
      const s = applyWalk(id, PLAN.shared.ns, PLAN.shared.k, log);
      (id === "routed" ? l2Rows : sharedRows).push(...s.walk.rows);
      for (const f of s.walk.failures)
        notMeasured.push({ label: f.label, n: f.n, why: `failed: ${f.error}` });
      kernel.push({ label: `netctx ${id === "routed" ? "l2 routed" : id} contexts`, reading: s.kernel });
    } catch (err) {
      notMeasured.push({ label: APPLY_WALKS[id].label, why: `the walk failed: ${why(err)}` });
    }
  }

  log("BPF hooks");
  try {
    bpf = { samples: measureBpfHooks(join(cgroupParent, "bpf-hooks"), PLAN.bpf), ...PLAN.bpf };
  } catch (err) {
    notMeasured.push({ label: "BPF hook cost", why: `failed: ${why(err)}` });
  }

  /** One section: its result, or a line of what was not measured and why; the namespaces it left settled after it. */
  async function section<T>(heading: string, label: string, run: () => Promise<T>): Promise<T | undefined> {
    log(heading);
    try {
      return await run();
    } catch (err) {
      notMeasured.push({ label, why: `failed: ${why(err)}` });
      return undefined;
    } finally {
      await settleNetns();
    }
  }

  datapath = await section("data path", "data path", () => datapathSection(quick));
  const peerlessStarted = elapsed();
  overlay = await section("overlay (issue 18)", "overlay", () => overlaySection(quick, log));
  policy = await section("policy (issue 19)", "policy", () => policySection(quick, log));
  counters = await section("counters (issue 21)", "counters", () => countersSection(quick, log));
  dns = await section("DNS (issue 20)", "DNS", () => dnsSection(quick, log));
  cliStart = await section("CLI start (issue 21)", "CLI start", () => cliStartSection(quick, log));
  const peerlessSeconds = elapsed() - peerlessStarted;

  // Peers last: their extent is cut to the time left, each keeping room for the smallest N of those after it. The
  // peerless sections' time (overlay, policy, counters, DNS, CLI start) is added to the budget: they need none of these
  // peers, which keep theirs.
  const deadline = PLAN.budgetSeconds + peerlessSeconds;
  for (const [index, planned] of PLAN.peers.entries()) {
    const label = PEERS[planned.id].label;
    const later = PLAN.peers.slice(index + 1).map((p) => peerSeconds({ ...p, ns: [Math.min(...p.ns)] }));
    const left = deadline - elapsed() - later.reduce((a, b) => a + b, 0);
    const ns = [...planned.ns];
    while (ns.length > 1 && peerSeconds({ ...planned, ns }) > left) ns.pop();
    for (const n of planned.ns.filter((x) => !ns.includes(x)))
      notMeasured.push({
        label,
        n,
        why: `left out by the time budget: the walk up to N=${n} through the plugin itself takes ~${Math.round(peerSeconds({ ...planned, ns: planned.ns.filter((x) => x <= n) }))} s, ${Math.max(0, Math.round(left))} s were left for this peer`,
      });
    log(`${label}: N = ${ns.join(", ")} (estimate ${Math.round(peerSeconds({ ...planned, ns }))} s)`);
    const timeoutMs = Math.max(30, Math.max(left, peerSeconds({ ...planned, ns }) * 1.5)) * 1000;
    const outcome = await runPeer(planned.id, ns, planned.k, timeoutMs, (line) => log(`  ${line}`));
    if (outcome.kind === "missing") {
      notMeasured.push({ label, why: outcome.why });
      continue;
    }
    const rows = outcome.kind === "measured" ? outcome.walk.rows : outcome.rows;
    l2Rows.push(...rows);
    for (const n of ns.filter((x) => !rows.some((r) => r.n === x))) {
      const failure = outcome.kind === "measured" ? outcome.walk.failures.find((f) => f.n === n) : undefined;
      notMeasured.push({
        label,
        n,
        why: failure ? `failed: ${failure.error}` : outcome.kind === "partial" ? outcome.why : "no row",
      });
    }
    if (outcome.kind === "measured") {
      kernel.push({ label, reading: outcome.kernel });
      if (outcome.iptablesRulesAtN !== undefined) iptablesRules[label] = outcome.iptablesRulesAtN;
    }
  }
} finally {
  removeCgroupTree(cgroupParent);
}

// Cells of the matrix this mode leaves out on purpose.
const sampledAt = (id: L2PathId) =>
  PLAN.netctx
    .filter((c) => c.paths.some((p) => p.id === id))
    .map((c) => c.n)
    .join(" and ");
const PURPOSE: Partial<Record<string, string>> = {
  [L2_PATHS.cli]: `~0.6 s per context (two node starts): sampled at N=${sampledAt("cli")} only`,
  [L2_PATHS.cliEngine]: `a node start per operation: sampled at N=${sampledAt("cliEngine")} only`,
  [L2_PATHS.cniExec]: `a node start per operation: sampled at N=${sampledAt("cniExec")} only`,
};
const l2Labels = [
  LIBRARY,
  APPLY_WALKS.routed.label,
  KERNEL_FLOOR,
  L2_PATHS.cniEngine,
  L2_PATHS.cniExec,
  L2_PATHS.cliEngine,
  L2_PATHS.cli,
  REFERENCE,
  PEERS["bridge-nomasq"].label,
  PEERS["ptp-masq"].label,
  PEERS.netavark.label,
];
for (const label of l2Labels)
  for (const n of PLAN.l2Ns) {
    const listed = notMeasured.some((x) => x.label === label && (x.n === undefined || x.n === n));
    const planned =
      PLAN.netctx.some((c) => c.n === n && c.paths.some((p) => L2_PATHS[p.id as L2PathId] === label)) ||
      ([APPLY_WALKS.routed.label, KERNEL_FLOOR].includes(label) && PLAN.shared.ns.includes(n)) ||
      PLAN.peers.some((p) => PEERS[p.id].label === label && p.ns.includes(n));
    if (!listed && !planned)
      notMeasured.push({ label, n, why: PURPOSE[label] ?? "not in this mode's matrix (time budget)" });
  }

const data: BenchData = {
  mode: quick ? "quick" : "full",
  date: new Date().toISOString(),
  wallSeconds: elapsed(),
  machine: machine(),
  l2Ns: PLAN.l2Ns,
  l2Labels,
  l2Rows,
  sharedRows,
  notMeasured,
  ...(l2Memory ? { l2Memory } : {}),
  kernel,
  iptablesRules,
  ...(bpf ? { bpf } : {}),
  ...(datapath ? { datapath } : {}),
  ...(overlay ? { overlay } : {}),
  ...(policy ? { policy } : {}),
  ...(counters ? { counters } : {}),
  ...(dns ? { dns } : {}),
  ...(cliStart ? { cliStart } : {}),
};
writeFileSync(join(ROOT, "BENCHMARKS.md"), benchmarksMarkdown(data));
writeFileSync(join(ROOT, "bench", "results.json"), `${JSON.stringify(results(data), null, 2)}\n`);
const series = l2Labels
  .map((label) => ({
    label,
    points: l2Rows
      .filter((r) => r.label === label)
      .sort((a, b) => a.n - b.n)
      .map((r): [number, number] => [r.n, r.setup.median]),
  }))
  .filter((s) => s.points.length > 0);
writeSetupPlot(join(ROOT, "bench", "setup-vs-n.png"), series, {
  title: `l2 setup per context against N (${quick ? "quick" : "full"} run, median)`,
  xLabel: "N (contexts alive)",
  yLabel: "setup ms per context",
});
console.log("");
for (const line of goalLines(data)) console.log(line);
console.log(
  `\nwrote BENCHMARKS.md, bench/results.json and bench/setup-vs-n.png in ${elapsed().toFixed(0)} s`,
);
