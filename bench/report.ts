/**
 * BENCHMARKS.md and bench/results.json from one run's figures. Every ratio and every goal verdict is computed from
 * the rows of this run; a cell without a row is listed under "Not measured" with the reason.
 */

import { addedPerCall, type BpfHookOptions, type BpfHookSamples, CASES, type HookCase } from "./bpf-hooks.ts";
import type { CliStartFigures, CliStartResult } from "./cli-start.ts";
import type { CountersFigures, CountersResult } from "./counters.ts";
import type { DatapathResult } from "./datapath.ts";
import type { DnsFigures, DnsResult } from "./dns.ts";
import { KERNEL_FLOOR } from "./kernel-floor.ts";
import type { L2Memory } from "./l2-lifecycle.ts";
import type { KernelReading } from "./memory.ts";
import type { OverlayFigures, OverlayResult } from "./overlay.ts";
import type { PolicyFigures, PolicyResult } from "./policy.ts";
import type { Measured } from "./population.ts";
import { fmt, ratio, stats } from "./stats.ts";

export const REFERENCE = "CNI bridge + ipMasq";
export const LIBRARY = "netctx library (apply)";

export interface NotMeasured {
  label: string;
  n?: number;
  why: string;
}

export interface BenchData {
  mode: "quick" | "full";
  date: string;
  wallSeconds: number;
  machine: string[];
  l2Ns: number[];
  /** Display order of the l2 paths: netctx first, then the peers. */
  l2Labels: string[];
  l2Rows: Measured[];
  sharedRows: Measured[];
  notMeasured: NotMeasured[];
  l2Memory?: L2Memory;
  kernel: { label: string; reading: KernelReading }[];
  iptablesRules: Record<string, number>;
  bpf?: { samples: BpfHookSamples } & BpfHookOptions;
  datapath?: DatapathResult;
  overlay?: OverlayResult;
  policy?: PolicyResult;
  counters?: CountersResult;
  dns?: DnsResult;
  cliStart?: CliStartResult;
}

export interface ResultRow {
  section: "l2" | "shared-stack";
  label: string;
  n: number;
  k: number;
  rounds: number;
  setupMedian: number;
  setupP95: number;
  teardownMedian: number;
  teardownP95: number;
  bothMedian: number;
  bothP95: number;
}

/**
 * bench/results.json: the setup/teardown rows (per path and N) under "rows", and the overlay section's figures
 * (issue 18) under "overlay", the policy section's (issue 19) under "policy", the counters and CLI-start sections'
 * (issue 21) under "counters" and "cliStart", and the DNS section's (issue 20) under "dns" when they ran.
 */
export interface Results {
  rows: ResultRow[];
  overlay?: OverlayFigures;
  policy?: PolicyFigures;
  counters?: CountersFigures;
  dns?: DnsFigures;
  cliStart?: CliStartFigures;
}

export function results(data: BenchData): Results {
  return {
    rows: resultRows(data),
    ...(data.overlay ? { overlay: data.overlay.figures } : {}),
    ...(data.policy ? { policy: data.policy.figures } : {}),
    ...(data.counters ? { counters: data.counters.figures } : {}),
    ...(data.dns ? { dns: data.dns.figures } : {}),
    ...(data.cliStart ? { cliStart: data.cliStart.figures } : {}),
  };
}

export function resultRows(data: BenchData): ResultRow[] {
  const row = (section: ResultRow["section"], r: Measured): ResultRow => ({
    section,
    label: r.label,
    n: r.n,
    k: r.k,
    rounds: r.rounds,
    setupMedian: r.setup.median,
    setupP95: r.setup.p95,
    teardownMedian: r.teardown.median,
    teardownP95: r.teardown.p95,
    bothMedian: r.both.median,
    bothP95: r.both.p95,
  });
  return [...data.l2Rows.map((r) => row("l2", r)), ...data.sharedRows.map((r) => row("shared-stack", r))];
}

function find(rows: Measured[], label: string, n: number): Measured | undefined {
  return rows.find((r) => r.label === label && r.n === n);
}

function ordered(rows: Measured[], labels: string[]): Measured[] {
  const rank = (l: string) => (labels.includes(l) ? labels.indexOf(l) : labels.length);
  return [...rows].sort(
    (a, b) => rank(a.label) - rank(b.label) || a.label.localeCompare(b.label) || a.n - b.n,
  );
}

/** A row of a setup/teardown table (see lifecycleColumns), its ratio already worded. */
function lifecycleCells(r: Measured, ratioCell: string): string[] {
  return [
    r.label,
    String(r.n),
    r.rounds > 1 ? `${r.k} x ${r.rounds}` : String(r.k),
    fmt(r.setup.median),
    fmt(r.setup.p95),
    fmt(r.teardown.median),
    fmt(r.teardown.p95),
    fmt(r.both.median),
    fmt(r.both.p95),
    ratioCell,
  ];
}

/** The columns of every setup/teardown table, the last one naming what the ratio is taken to. */
function lifecycleColumns(ratio: string): string[] {
  return [
    "path",
    "N",
    "k",
    "setup median",
    "setup p95",
    "teardown median",
    "teardown p95",
    "setup+teardown median",
    "setup+teardown p95",
    ratio,
  ];
}

function table(head: string[], body: string[][]): string {
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...body.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

function ratioText(r: number | undefined): string {
  if (r === undefined) return "n/a";
  return r < 1 && r > 0 ? `${fmt(r, 3)} (1/${fmt(1 / r, 1)})` : fmt(r, 2);
}

function l2Section(data: BenchData): string {
  const body = ordered(data.l2Rows, data.l2Labels).map((r) => {
    const ref = find(data.l2Rows, REFERENCE, r.n);
    return lifecycleCells(
      r,
      ref ? ratioText(ratio(r.both.median, ref.both.median)) : `n/a (no ${REFERENCE} row at N=${r.n})`,
    );
  });
  return `## l2 context setup and teardown, per context, at a population of N

Setup = a network namespace with a veth into a bridge network with NAT, addresses and a default route (netctx library
and CLI: \`create\`; CNI paths and peers: \`ip netns add\` + ADD, as a runtime does; the routed row: the same into a
routed network, no bridge); teardown = \`rm\` (CNI and peers:
DEL with the ADD result + \`ip netns del\`). Each figure is per context, measured on k contexts added while N - k
others exist (so the last one makes N) and then removed again (k x r: r times over; the apply path makes its k
in one batch and each context's figure is the batch's share, so its median and p95 come from r batches). ms; ratio = setup+teardown median over the
${REFERENCE} median at the same N in this run.

${table(lifecycleColumns(`ratio to ${REFERENCE}`), body)}

![l2 setup per context against N](bench/setup-vs-n.png)
`;
}

interface Growth {
  label: string;
  from: Measured;
  to: Measured;
}

function growths(data: BenchData): Growth[] {
  const out: Growth[] = [];
  for (const label of [...new Set(ordered(data.l2Rows, data.l2Labels).map((r) => r.label))]) {
    const rows = data.l2Rows.filter((r) => r.label === label).sort((a, b) => a.n - b.n);
    if (rows.length >= 2) out.push({ label, from: rows[0]!, to: rows[rows.length - 1]! });
  }
  return out;
}

function growthSection(data: BenchData): string {
  const body = growths(data).map((g) => [
    g.label,
    `${g.from.n} -> ${g.to.n}`,
    fmt(ratio(g.to.setup.median, g.from.setup.median), 2),
    fmt(ratio(g.to.teardown.median, g.from.teardown.median), 2),
    fmt(ratio(g.to.both.median, g.from.both.median), 2),
    data.iptablesRules[g.label] === undefined ? "" : String(data.iptablesRules[g.label]),
  ]);
  return `## Growth: per-context cost at the largest N over the smallest

A path whose per-context cost stays flat scales linearly in total. The reference bridge plugin grows with its
iptables rules (one chain and rules per container with ipMasq); netctx keeps per-context firewall state in nft sets.
${kernelShare(data)}
${table(
  [
    "path",
    "N",
    "setup growth",
    "teardown growth",
    "setup+teardown growth",
    "iptables rules at the largest N (peers)",
  ],
  body,
)}
`;
}

/**
 * What a single bridge costs the kernel as it fills: the floor row makes the same namespace, veth and bridge port
 * through the same netlink calls on one bridge, without the engine; netctx spreads a network over segment bridges.
 */
function kernelShare(data: BenchData): string {
  const floor = growths(data).find((g) => g.label === KERNEL_FLOOR);
  const lib = growths(data).find((g) => g.label === LIBRARY);
  if (!floor || !lib || floor.from.n !== lib.from.n || floor.to.n !== lib.to.n) return "";
  const delta = (g: Growth) => fmt(g.to.both.median - g.from.both.median);
  return `
The kernel floor row makes the same namespace, veth, bridge port and link states through the same netlink calls,
all on one bridge, without state, IPAM, addresses, routes or firewall. From N=${floor.from.n} to N=${floor.to.n} it grows by
${delta(floor)} ms per context (${fmt(floor.from.both.median)} -> ${fmt(floor.to.both.median)} ms): a Linux bridge walks its port list on each port added or
removed (features, MTU, GSO limits, promiscuity, the static FDB, the STP port states). netctx puts a network's
contexts on segment bridges of at most 128 ports joined by trunks, so its apply path grows by ${delta(lib)} ms
(${fmt(lib.from.both.median)} -> ${fmt(lib.to.both.median)} ms).
`;
}

function sharedSection(data: BenchData): string {
  const refs = data.l2Rows.filter((r) => r.label === REFERENCE).sort((a, b) => a.n - b.n);
  const ref = refs.find((r) => r.n === 100) ?? refs[0];
  const body = data.sharedRows
    .slice()
    .sort((a, b) => a.label.localeCompare(b.label) || a.n - b.n)
    .map((r) => lifecycleCells(r, ref ? ratioText(ratio(r.both.median, ref.both.median)) : "n/a"));
  const refText = ref
    ? `the ${REFERENCE} l2 row at N=${ref.n} of this run (${fmt(ref.both.median)} ms; there is no shared-stack peer)`
    : `the ${REFERENCE} l2 row, which this run did not measure`;
  return `## socket and l3 context setup and teardown, per context

On a \`host\` network (addresses on a host device). socket: a cgroup with the bind/connect/sendmsg/socket-create
programs; l3: the same plus its own routing table and policy rules. Measured as the l2 rows (k at a population of N
contexts of the same level, through the apply path). ms; ratio = setup+teardown median over ${refText}.

${table(lifecycleColumns("ratio"), body)}
`;
}

const CASE_TEXT: Record<HookCase, string> = {
  none: "no programs (the peer)",
  constants: "netctx per-context programs (constants)",
  map: "shared program, map keyed by cgroup id (bind4 only)",
};

function bpfSection(data: BenchData): string {
  if (!data.bpf) return "## BPF hook cost\n\nNot measured in this run (see Not measured).\n";
  const { samples, cycles, calls } = data.bpf;
  const body: string[][] = [];
  for (const op of ["bind", "connect"] as const) {
    for (const c of CASES) {
      const s = stats(samples[c][op]);
      const added = c === "none" ? undefined : addedPerCall(samples, c, op);
      const base = stats(samples.none[op]).median;
      const unhooked = c === "map" && op === "connect";
      body.push([
        op === "bind" ? "socket()+bind(0.0.0.0)+close()" : "socket()+connect()+close() (UDP)",
        CASE_TEXT[c] + (unhooked ? " (connect not hooked)" : ""),
        fmt(s.median, 0),
        fmt(s.p95, 0),
        added ? fmt(added.median, 0) : "",
        added ? fmt(added.p95, 0) : "",
        fmt(ratio(s.median, base), 3),
      ]);
    }
  }
  return `## BPF hook cost

ns per call, from a process inside the case's cgroup: ${cycles} cycles, each giving every case one batch of ${calls}
calls of each operation (after 10 untimed ones), the cases in turn on one CPU, forward and backward on alternate
cycles (bench/bpf-hooks-loop.c: one process per case, so nothing moves between cgroups while it runs). This VM's
speed drifts by up to 1.5x within a second, far more than the hooks cost, so a case is compared with no programs
cycle by cycle, milliseconds apart. Median and p95 over the cycles. Added = the case minus no programs in the same
cycle: the programs' run time (socket creation and bind, resp. connect) plus the change they make to the call itself
(a wildcard bind narrowed to the context's address, whose local address check is a FIB lookup; the source bound on
connect, which spares the kernel the second route lookup of a connect without a source), so it can come out negative.
The map case does not hook connect: its added connect figure is what the method reads for no difference.

${table(["operation", "programs", "median ns", "p95 ns", "added median ns", "added p95 ns", "ratio to no programs"], body)}
`;
}

function perThousandMb(reading: KernelReading, key: "slabKb" | "sunreclaimKb"): number | undefined {
  if (!reading.atN) return undefined;
  return ((reading.atN[key] - reading.before[key]) * 1000) / reading.n / 1024;
}

function memorySection(data: BenchData): string {
  const ref = data.kernel.find((k) => k.label === REFERENCE);
  const refSlab = ref ? perThousandMb(ref.reading, "slabKb") : undefined;
  const body = data.kernel.map(({ label, reading }) => {
    const slab = perThousandMb(reading, "slabKb");
    return [
      label,
      String(reading.n),
      fmt(slab, 1),
      fmt(perThousandMb(reading, "sunreclaimKb"), 1),
      label === REFERENCE || !label.startsWith("netctx l2") ? "" : fmt(ratio(slab, refSlab), 2),
    ];
  });
  const m = data.l2Memory;
  const lines: string[] = [];
  if (m) {
    if (m.dbAtN !== undefined) {
      const mib = (b: number) => fmt(b / 1024 / 1024, 2);
      const per1000 = ((m.dbAtN.liveBytes - m.dbBefore.liveBytes) * 1000) / m.kernel.n;
      lines.push(
        `- State database (SQLite pages in use): ${mib(m.dbBefore.liveBytes)} MiB empty, ${mib(m.dbAtN.liveBytes)} MiB with ${m.kernel.n} l2 contexts: ${mib(per1000)} MiB per 1000 contexts. Files on disk with the WAL: ${mib(m.dbAtN.fileBytes)} MiB (the WAL is reused in place, so it keeps the size of the busiest stretch between checkpoints).`,
      );
    }
    lines.push(
      `- Resident engine (\`netctx serve\`) VmRSS: ${fmt(m.engineRssStartKb / 1024, 1)} MiB at start` +
        (m.engineRssAtNKb !== undefined
          ? `, ${fmt(m.engineRssAtNKb / 1024, 1)} MiB with ${m.kernel.n} contexts after serving CNI calls (peak VmHWM ${fmt((m.engineHwmKb ?? Number.NaN) / 1024, 1)} MiB).`
          : "."),
    );
  }
  return `## Memory per 1000 contexts

Kernel: /proc/meminfo Slab and SUnreclaim with N contexts alive minus before the population was built, scaled to
1000 contexts. One reading per population (no median): Slab is machine-wide, so other work on the machine is noise
in it. The ratio compares the netctx l2 population with the ${REFERENCE} population of this run.

${table(["population", "N", "Slab MiB per 1000", "SUnreclaim MiB per 1000", `Slab ratio to ${REFERENCE}`], body)}

${lines.join("\n")}
`;
}

/** An added cost with its sign: the connect hook makes a connect cheaper. */
const signed = (x: number) => `${x >= 0 ? "+" : ""}${fmt(x, 0)}`;

export type Verdict = { goal: string; status: "met" | "not met" | "not measured"; figure: string };

function goals(data: BenchData): Verdict[] {
  const out: Verdict[] = [];
  // 1: library setup+teardown at N=500 <= 1/25 of the reference.
  const common = data.l2Rows
    .filter((r) => r.label === LIBRARY && find(data.l2Rows, REFERENCE, r.n))
    .map((r) => r.n)
    .sort((a, b) => a - b);
  const at = common.includes(500) ? 500 : common[common.length - 1];
  const g1 = "l2 via apply/library, setup+teardown per context <= 1/25 of CNI bridge + ipMasq at N=500";
  if (at === undefined) out.push({ goal: g1, status: "not measured", figure: "no common N" });
  else {
    const lib = find(data.l2Rows, LIBRARY, at)!;
    const ref = find(data.l2Rows, REFERENCE, at)!;
    const r = lib.both.median / ref.both.median;
    out.push({
      goal: g1,
      status: r <= 1 / 25 ? "met" : "not met",
      figure: `${fmt(lib.both.median)} ms vs ${fmt(ref.both.median)} ms = 1/${fmt(1 / r, 1)} at N=${at}${at === 500 ? "" : " (N=500 not measured in this mode)"}`,
    });
  }
  // 2: growth <= 1.2x for netctx, N=100 to N=1000 (or the widest span this mode measured).
  for (const g of growths(data).filter((x) => x.label.startsWith("netctx"))) {
    const r = g.to.both.median / g.from.both.median;
    const span = g.from.n === 100 && g.to.n === 1000 ? "" : " (N=100 -> 1000 not measured in this mode)";
    out.push({
      goal: `growth of setup+teardown per context <= 1.2x, ${g.label}`,
      status: r <= 1.2 ? "met" : "not met",
      figure: `${fmt(r, 2)}x (N=${g.from.n}: ${fmt(g.from.both.median)} ms, N=${g.to.n}: ${fmt(g.to.both.median)} ms)${span}`,
    });
  }
  // 3: BPF hooks add <= 300 ns.
  const g3 = "BPF hooks add <= 300 ns per bind()+close() and per connect()";
  if (!data.bpf) out.push({ goal: g3, status: "not measured", figure: "" });
  else {
    const bind = addedPerCall(data.bpf.samples, "constants", "bind").median;
    const connect = addedPerCall(data.bpf.samples, "constants", "connect").median;
    out.push({
      goal: g3,
      status: Math.max(bind, connect) <= 300 ? "met" : "not met",
      figure: `${signed(bind)} ns bind, ${signed(connect)} ns connect (per-context programs, median)`,
    });
  }
  // 4: data path ratios, decided in the data path section.
  out.push(...(data.datapath?.verdicts ?? []));
  // 5: overlay networks (issue 18), decided in the overlay section.
  out.push(...(data.overlay?.verdicts ?? []));
  // 6: policy (issue 19), decided in the policy section.
  out.push(...(data.policy?.verdicts ?? []));
  // 7: counters and the scrape (issue 21), decided in the counters section.
  out.push(...(data.counters?.verdicts ?? []));
  // 8: DNS (issue 20), decided in the DNS section.
  out.push(...(data.dns?.verdicts ?? []));
  // 9: CLI start (issue 21), decided in the CLI-start section.
  out.push(...(data.cliStart?.verdicts ?? []));
  return out;
}

function goalsSection(data: BenchData): string {
  return `## Goals

${table(
  ["goal", "status", "figure (this run)"],
  goals(data).map((g) => [g.goal, g.status, g.figure]),
)}
`;
}

function notMeasuredSection(data: BenchData): string {
  if (!data.notMeasured.length) return "";
  return `## Not measured in this run

${data.notMeasured.map((x) => `- ${x.label}${x.n === undefined ? "" : ` at N=${x.n}`}: ${x.why}`).join("\n")}
`;
}

export function benchmarksMarkdown(data: BenchData): string {
  return [
    `# netctx benchmarks

${data.machine.map((l) => `${l}  `).join("\n")}
Date: ${data.date}. Mode: ${data.mode} (\`npm run bench${data.mode === "quick" ? " -- --quick" : ""}\`), ${Math.round(data.wallSeconds)} s wall.
All figures come from this one run, inside one throwaway host namespace; each peer runs in a fresh throwaway
namespace of its own (nested), so it starts from an empty firewall, and that namespace is dropped afterwards.
`,
    goalsSection(data),
    l2Section(data),
    growthSection(data),
    sharedSection(data),
    bpfSection(data),
    memorySection(data),
    data.datapath?.text ?? "## Data path\n\nNot measured in this run.\n",
    data.overlay?.text ?? "## Overlay (issue 18)\n\nNot measured in this run.\n",
    data.policy?.text ?? "## Policy (issue 19)\n\nNot measured in this run.\n",
    data.counters?.text ?? "## Counters (issue 21)\n\nNot measured in this run.\n",
    data.dns?.text ?? "## DNS (issue 20)\n\nNot measured in this run.\n",
    data.cliStart?.text ?? "## CLI start (issue 21)\n\nNot measured in this run.\n",
    notMeasuredSection(data),
  ]
    .filter(Boolean)
    .map((section) => `${section.trimEnd()}\n`)
    .join("\n");
}

export function goalLines(data: BenchData): string[] {
  return goals(data).map((g) => `${g.status.padEnd(12)} ${g.goal}: ${g.figure}`);
}
