/**
 * Overlay networks across hosts (issue 18), inside the bench's throwaway namespace: test hosts (each its own net and
 * mount namespace, a veth into an underlay bridge; bench/cluster-hosts.ts, the tests' harness), one etcd member and
 * an engine per host.
 *
 *  1. Cross-host TCP throughput context to context (iperf3, one stream per path, the paths in turns as in
 *     bench/datapath.ts) over VXLAN and over a --direct-routing network, against the hosts' own underlay addresses,
 *     in the same runs.
 *  2. Create latency of an l2 context on an overlay network against a local bridge network on the same host, through
 *     the engine's API (what `netctx create` sends it), alternating; and the etcd requests those creates waited for
 *     (the engine's counter, `cluster status --json` -> overlay).
 *  3. Scale by simulation: 1000 node records with a block each written to etcd; a new host's engine starts and the
 *     time until its kernel holds all their routes is taken; then one node joins and one leaves, and the kernel
 *     requests the engine made for each (its data path counts, `cluster status --json` -> overlay.peers) are compared
 *     with the same join and leave on a host with 10 peers.
 */
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { Etcd, type Write } from "../src/cluster/etcd.ts";
import { blockKey, nodeKey } from "../src/cluster/keys.ts";
import type { BlockRecord, NodeRecord } from "../src/cluster/node-record.ts";
import type { OverlayStats, PeerPathStats } from "../src/engine/overlay.ts";
import type { ContextView } from "../src/engine/views.ts";
import { Rtnl } from "../src/kernel/rtnl.ts";
import { OVERLAY_ROUTE_PROTOCOL } from "../src/networks/overlay-peers.ts";
import {
  type CliResult,
  runAsync,
  startCluster,
  stopCluster,
  type TestCluster,
  type TestHost,
} from "./cluster-hosts.ts";
import { combinedRatio, measureInTurns, type Row } from "./datapath.ts";
import type { Verdict } from "./report.ts";
import { fmt, nowMs, sleep, stats } from "./stats.ts";

const PLAN = {
  quick: { runs: 3, turns: 50, creates: 20 },
  full: { runs: 8, turns: 160, creates: 60 },
} as const;
const SIM_PEERS = 1000;
const BASE_PEERS = 10;
const FIRST_PORT = 5301;
const GOAL = { vxlan: 0.85, direct: 0.95, create: 1.3, programSeconds: 2 } as const;
const NET = { vxlan: "ovx", direct: "ovd", bridge: "lbr", sim: "ovs" } as const;
const SIM_SUBNET = "10.64.0.0/14";

/** What the section found, for bench/results.json (key "overlay"). */
export interface OverlayFigures {
  throughput?: {
    runs: number;
    turns: number;
    /** Gbit/s per run, by path. */
    gbits: Record<"underlay" | "vxlan" | "direct", (number | undefined)[]>;
    vxlanRatio?: number;
    vxlanRatioError?: number;
    directRatio?: number;
    directRatioError?: number;
    mtu: { underlay: number; overlay: number };
  };
  create?: {
    n: number;
    overlayMs: { median: number; p95: number };
    bridgeMs: { median: number; p95: number };
    ratio: number;
    creates: number;
    createEtcdRequests: number;
    etcdRequestsPerCreate: number;
  };
  scale?: {
    peers: number;
    /** From `netctx serve` being started to the kernel holding every peer's route. */
    programSeconds: number;
    /** From the engine saying it serves (its cluster work begun) to the same. */
    programSecondsFromServing: number;
    /** Kernel requests (syncPeers kernelOps) for one node joining and leaving, at 10 peers and at 1000. */
    join: { base: number; atScale: number };
    leave: { base: number; atScale: number };
    /** The engine's log line for the pass that programmed the 1000. */
    firstPassLine?: string;
  };
}

export interface OverlayResult {
  text: string;
  verdicts: Verdict[];
  figures: OverlayFigures;
}

const GOALS = {
  vxlan: `overlay: cross-host TCP context to context over VXLAN >= ${GOAL.vxlan}x underlay host to host`,
  direct: `overlay: cross-host TCP context to context with --direct-routing >= ${GOAL.direct}x underlay host to host`,
  create: `overlay: l2 create on an overlay network <= ${GOAL.create}x on a local bridge network (median)`,
  etcd: "overlay: etcd requests per create while the block has room = 0",
  program: `overlay: a new host programs ${SIM_PEERS} simulated peers <= ${GOAL.programSeconds} s`,
  join: `overlay: kernel requests for one node joining at ${SIM_PEERS} peers = at ${BASE_PEERS} (O(1))`,
  leave: `overlay: kernel requests for one node leaving at ${SIM_PEERS} peers = at ${BASE_PEERS} (O(1))`,
};

export async function overlaySection(quick: boolean, log: (line: string) => void): Promise<OverlayResult> {
  const plan = PLAN[quick ? "quick" : "full"];
  const heading = `## Overlay (issue 18): cross-host throughput, create latency, scale by simulation`;
  const missing = ["iperf3", "etcd"].filter(
    (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status !== 0,
  );
  if (missing.length)
    return notMeasured(heading, `${missing.join(" and ")} not installed (Debian iperf3, etcd-server)`);
  const started = Date.now();
  const figures: OverlayFigures = {};
  const parts: string[] = [];
  const failures: Partial<Record<keyof typeof GOALS, string>> = {};
  let cluster: TestCluster | undefined;
  let etcd: Etcd | undefined;
  try {
    cluster = await startCluster({ hosts: 4, etcdHosts: [1] });
    const c = cluster;
    etcd = await Etcd.open({ endpoints: [c.members[0]!.clientUrl], tls: noTls });
    const [h1, h2] = [c.host(1), c.host(2)];
    await Promise.all([h1.startEngine(), h2.startEngine()]);
    log("  overlay: 2 hosts, etcd, engines up");

    try {
      const t = await throughput(h1, h2, plan.runs, plan.turns, log);
      figures.throughput = t.figures;
      parts.push(t.text);
    } catch (err) {
      failures.vxlan = failures.direct = `failed: ${why(err)}`;
    }
    try {
      const cr = await createLatency(h1, plan.creates, log);
      figures.create = cr;
    } catch (err) {
      failures.create = failures.etcd = `failed: ${why(err)}`;
    }
    // The scale hosts have the machine to themselves: the first two engines go.
    await h1.engine?.stop();
    await h2.engine?.stop();
    try {
      figures.scale = await scale(c, etcd, log);
    } catch (err) {
      failures.program = failures.join = failures.leave = `failed: ${why(err)}`;
    }
  } catch (err) {
    const line = `setting up the cluster failed: ${why(err)}`;
    for (const k of Object.keys(GOALS) as (keyof typeof GOALS)[]) failures[k] ??= line;
  } finally {
    etcd?.close();
    await stopCluster();
    if (cluster) rmSync(cluster.scratch, { recursive: true, force: true });
  }
  const wall = (Date.now() - started) / 1000;
  return render(heading, figures, failures, parts, plan, wall);
}

const noTls = { caFile: undefined, certFile: undefined, keyFile: undefined };
const why = (err: unknown) => (err instanceof Error ? err.message : String(err)).split("\n")[0]!;

function notMeasured(heading: string, reason: string): OverlayResult {
  return {
    text: `${heading}\n\nNot measured: ${reason}.\n`,
    verdicts: Object.values(GOALS).map((goal) => ({ goal, status: "not measured", figure: reason })),
    figures: {},
  };
}

function ok(r: CliResult, what: string): string {
  if (r.code !== 0) throw new Error(`${what}: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

async function until(what: string, read: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await read()) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

async function listed(h: TestHost, name: string): Promise<boolean> {
  const r = await h.netctx("network", "ls", "--json");
  return r.code === 0 && (JSON.parse(r.stdout) as { name: string }[]).some((n) => n.name === name);
}

/** `netctx cluster status --json`'s overlay section, in host h. */
async function overlayStats(h: TestHost): Promise<OverlayStats> {
  const s = JSON.parse(ok(await h.netctx("cluster", "status", "--json"), `cluster status on ${h.name}`)) as {
    overlay?: OverlayStats;
  };
  if (!s.overlay) throw new Error(`the engine of ${h.name} has no overlay section (not a cluster member?)`);
  return s.overlay;
}

/** Where a context's network namespace is seen from this (the bench's) namespace: through its host's root. */
function netnsOf(h: TestHost, view: ContextView): string {
  if (!view.netns) throw new Error(`context ${view.name} has no netns`);
  return `/proc/${h.pid}/root${view.netns}`;
}

/** argv in host h without blocking the event loop (the engines' logs keep flowing). */
function runIn(h: TestHost, argv: string[]): Promise<CliResult> {
  return runAsync(h.argv(argv), h.env);
}

const inNetns = (path: string) => (cmd: string[]) => ["nsenter", `--net=${path}`, "--", ...cmd];

function ipText(h: TestHost, args: string[]): string {
  const r = h.run(["ip", ...args]);
  return r.code === 0 ? r.stdout.trim() : `(ip ${args.join(" ")}: ${r.stderr.trim()})`;
}

// ---------------------------------------------------------------------------------------------------------------
// 1. throughput

async function throughput(
  h1: TestHost,
  h2: TestHost,
  runs: number,
  turns: number,
  log: (line: string) => void,
): Promise<{ figures: NonNullable<OverlayFigures["throughput"]>; text: string }> {
  ok(
    await h1.netctx("network", "create", NET.vxlan, "--driver", "overlay", "--subnet", "10.70.0.0/16"),
    `network create ${NET.vxlan}`,
  );
  ok(
    await h1.netctx(
      "network",
      "create",
      NET.direct,
      "--driver",
      "overlay",
      "--subnet",
      "10.71.0.0/16",
      "--direct-routing",
    ),
    `network create ${NET.direct}`,
  );
  for (const n of [NET.vxlan, NET.direct]) await until(`${n} on h2`, () => listed(h2, n), 10_000);
  const make = async (h: TestHost, name: string, network: string): Promise<ContextView> =>
    JSON.parse(
      ok(
        await h.netctx("create", name, "--level", "l2", "--network", network, "--json"),
        `create ${name} on ${h.name}`,
      ),
    ) as ContextView;
  const [x1, d1, x2, d2] = await Promise.all([
    make(h1, "x1", NET.vxlan),
    make(h1, "d1", NET.direct),
    make(h2, "x2", NET.vxlan),
    make(h2, "d2", NET.direct),
  ]);
  const v4 = (v: ContextView) => v.addresses.find((a) => !a.includes(":"))!.split("/")[0]!;
  // Each host programs the other's block (a watch away); the first ping may also wait for it.
  for (const [from, h, to] of [
    [x2, h2, x1],
    [d2, h2, d1],
  ] as const)
    await until(
      `${from.name} reaches ${to.name}`,
      () => {
        const argv = inNetns(netnsOf(h, from))(["ping", "-n", "-q", "-c", "1", "-W", "1", v4(to)]);
        return spawnSync(argv[0]!, argv.slice(1)).status === 0;
      },
      15_000,
    );
  log("  overlay: contexts reach each other across hosts; iperf3 in turns");
  // A diagnostic, off by default: br_netfilter off in the two test hosts, to see what it costs the overlay rows
  // (their frames go up from a context through the host's bridge, which puts them through the inet hooks).
  if (process.env.NETCTX_BENCH_OVERLAY_NO_BRNF === "1")
    for (const h of [h1, h2]) ok(h.run(["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"]), "sysctl");
  const hostEnds = (h: TestHost) => (cmd: string[]) => h.argv(cmd);
  let port = FIRST_PORT;
  const row = (
    label: string,
    addr: string,
    server: Row["server"],
    client: Row["client"],
    ns: string,
  ): Row => ({
    label,
    group: "l2",
    port: port++,
    addr,
    server,
    client,
    serverNetns: ns,
    runs: [],
    errors: [],
  });
  const underlay = row(
    "underlay, host to host (h2 -> h1's underlay address)",
    h1.address4,
    hostEnds(h1),
    hostEnds(h2),
    `/proc/${h1.pid}/ns/net`,
  );
  const vxlan = row(
    `netctx l2 context to context across hosts, overlay over VXLAN (${NET.vxlan})`,
    v4(x1),
    inNetns(netnsOf(h1, x1)),
    inNetns(netnsOf(h2, x2)),
    netnsOf(h1, x1),
  );
  const direct = row(
    `netctx l2 context to context across hosts, overlay with --direct-routing (${NET.direct})`,
    v4(d1),
    inNetns(netnsOf(h1, d1)),
    inNetns(netnsOf(h2, d2)),
    netnsOf(h1, d1),
  );
  const rows = [underlay, vxlan, direct];
  for (let run = 0; run < runs; run++) {
    try {
      const got = await measureInTurns(rows, turns);
      for (const r of rows) r.runs.push(got.get(r));
    } catch (err) {
      for (const r of rows) {
        r.runs.push(undefined);
        r.errors.push(why(err));
      }
    }
  }
  const ratios = (r: Row) =>
    r.runs.flatMap((g, i) => {
      const base = underlay.runs[i];
      return g !== undefined && base ? [g / base] : [];
    });
  const vx = combinedRatio(ratios(vxlan));
  const dr = combinedRatio(ratios(direct));
  const mtu = (h: TestHost, dev: string) =>
    Number(
      (JSON.parse(h.run(["ip", "-j", "link", "show", dev]).stdout || "[{}]") as { mtu?: number }[])[0]?.mtu,
    );
  const figures: NonNullable<OverlayFigures["throughput"]> = {
    runs,
    turns,
    gbits: { underlay: underlay.runs, vxlan: vxlan.runs, direct: direct.runs },
    ...(vx ? { vxlanRatio: vx.ratio, ...(vx.error !== undefined ? { vxlanRatioError: vx.error } : {}) } : {}),
    ...(dr
      ? { directRatio: dr.ratio, ...(dr.error !== undefined ? { directRatioError: dr.error } : {}) }
      : {}),
    mtu: { underlay: mtu(h1, "eth0"), overlay: mtu(h1, `nv-${NET.vxlan}`) },
  };
  const list = (xs: (number | undefined)[], d: number) => xs.map((x) => fmt(x, d)).join(", ");
  const withError = (c: { ratio: number; error?: number } | undefined) =>
    c ? `${fmt(c.ratio, 3)}${c.error !== undefined ? ` ± ${fmt(c.error, 3)}` : ""}` : "n/a";
  const table = [
    "| path | Gbit/s (median) | Gbit/s per run | ratio to underlay | ratio per run |",
    "|---|---|---|---|---|",
    ...rows.map((r) => {
      const ms = r.runs.filter((x): x is number => x !== undefined);
      const failed = r.errors.length ? ` (${r.errors.length} failed: ${r.errors[0]})` : "";
      const c = r === underlay ? undefined : combinedRatio(ratios(r));
      return `| ${r.label} | ${fmt(ms.length ? stats(ms).median : undefined, 2)} | ${list(r.runs, 2)}${failed} | ${r === underlay ? "(reference)" : withError(c)} | ${r === underlay ? "" : list(ratios(r), 3)} |`;
    }),
  ].join("\n");
  const vxVia = ipText(h2, ["route", "get", v4(x1), "from", v4(x2), "iif", `nc-${NET.vxlan}`]);
  const drVia = ipText(h2, ["route", "get", v4(d1), "from", v4(d2), "iif", `nc-${NET.direct}`]);
  const vxDetails = ipText(h2, ["-d", "link", "show", `nv-${NET.vxlan}`])
    .split("\n")
    .slice(0, 3)
    .join(" ");
  const text = `### Cross-host throughput

Two hosts on one underlay segment (veths into a bridge, MTU ${figures.mtu.underlay}); etcd on the first. One l2 context per
host on each of two overlay networks, one plain (VXLAN, device MTU ${figures.mtu.overlay}), one \`--direct-routing\`. iperf3
as in the data path section: the server in h1 (its underlay address, resp. the context), the client in h2, the
three paths in turns of 3 + 10 ms, ${turns} turns a run, ${runs} runs; a path's ratio is the geometric mean of its
per-run ratios to the underlay row of the same run (without the extremes from 5 runs on), ± its standard error.
${process.env.NETCTX_BENCH_OVERLAY_NO_BRNF === "1" ? "Diagnostic run: net.bridge.bridge-nf-call-iptables=0 in both hosts.\n" : ""}h2 routes the VXLAN context's traffic \`${vxVia.replace(/\s+/g, " ")}\` and the direct-routing one's
\`${drVia.replace(/\s+/g, " ")}\`; the VXLAN device: \`${vxDetails.replace(/\s+/g, " ").trim()}\`.

${table}
`;
  return { figures, text };
}

// ---------------------------------------------------------------------------------------------------------------
// 2. create latency

async function createLatency(
  h: TestHost,
  n: number,
  log: (line: string) => void,
): Promise<NonNullable<OverlayFigures["create"]>> {
  ok(
    await h.netctx("network", "create", NET.bridge, "--subnet", "10.72.0.0/16"),
    `network create ${NET.bridge}`,
  );
  // Keepers: x1 (throughput) holds h's block of the overlay network, so none of the creates below leases or gives
  // back one; the bridge network gets one too, so both start from a made device.
  ok(await h.netctx("create", "keep-b", "--level", "l2", "--network", NET.bridge), "create keep-b");
  const before = await overlayStats(h);
  log(`  overlay: ${n} creates on each network, alternating`);
  // The engine answers callers in its own network namespace only: the loop runs inside the host.
  // nsenter into the host's mount namespace starts at /: back to the repository, where tsx resolves.
  const loop = await runIn(h, [
    "sh",
    "-c",
    `cd '${join(import.meta.dirname, "..")}' && exec "$0" "$@"`,
    process.execPath,
    "--import",
    "tsx",
    join(import.meta.dirname, "overlay-creates.ts"),
    join(h.stateDir, "netctx.sock"),
    String(n),
    NET.vxlan,
    NET.bridge,
  ]);
  const times = JSON.parse(ok(loop, "the create loop")) as Record<"overlay" | "bridge", number[]>;
  const after = await overlayStats(h);
  const o = stats(times.overlay);
  const b = stats(times.bridge);
  const creates = after.creates - before.creates;
  const createEtcdRequests = after.createEtcdRequests - before.createEtcdRequests;
  return {
    n,
    overlayMs: { median: o.median, p95: o.p95 },
    bridgeMs: { median: b.median, p95: b.p95 },
    ratio: o.median / b.median,
    creates,
    createEtcdRequests,
    etcdRequestsPerCreate: creates ? createEtcdRequests / creates : Number.NaN,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// 3. scale by simulation

const hex = (n: number) => n.toString(16).padStart(2, "0");

/** Simulated node i: an underlay address in a range nothing answers, a VTEP MAC, one /24 of the sim network. */
function simWrites(i: number): Write[] {
  const name = `sim${i}`;
  const cidr = `10.${64 + (i >> 8)}.${i & 255}.0/24`;
  const now = new Date().toISOString();
  const node: NodeRecord = {
    name,
    underlay: `10.201.${i >> 8}.${i & 255}`,
    vtepMac: `02:5e:00:00:${hex(i >> 8)}:${hex(i & 255)}`,
    blocks: [{ network: NET.sim, cidr }],
    contexts: 0,
    ttl: 10,
    registeredAt: now,
    version: "bench-simulated",
  };
  const block: BlockRecord = { node: name, network: NET.sim, cidr, since: now };
  return [
    { put: nodeKey(name), value: JSON.stringify(node) },
    { put: blockKey(NET.sim, cidr), value: JSON.stringify(block) },
  ];
}

/** Nodes from..to in transactions of 64 nodes (etcd takes up to 128 operations in one). */
async function writeSims(etcd: Etcd, from: number, to: number): Promise<void> {
  for (let i = from; i <= to; i += 64) {
    const writes: Write[] = [];
    for (let j = i; j <= Math.min(to, i + 63); j++) writes.push(...simWrites(j));
    if (!(await etcd.commit([], writes))) throw new Error(`etcd refused the writes of sim${i}..`);
  }
}

async function removeSim(etcd: Etcd, i: number): Promise<void> {
  const writes = simWrites(i).map((w) => ({ delete: "put" in w ? w.put : w.delete }));
  if (!(await etcd.commit([], writes))) throw new Error(`etcd refused to delete sim${i}`);
}

/** Our routes on the sim network's VXLAN device in h's kernel (0 while it has no device). */
function routeCounter(h: TestHost): { count(): number; close(): void } {
  const rtnl = Rtnl.open(`/proc/${h.pid}/ns/net`);
  return {
    count: () =>
      rtnl.routeList({ family: 4, dev: `nv-${NET.sim}` }).filter((r) => r.protocol === OVERLAY_ROUTE_PROTOCOL)
        .length,
    close: () => rtnl.close(),
  };
}

/** The data path's counts for the sim network on h once its pass has seen `peers` peers. */
async function peerCounts(h: TestHost, peers: number): Promise<PeerPathStats> {
  let counts: PeerPathStats | undefined;
  await until(
    `${h.name}'s engine counts ${peers} peers`,
    async () => {
      counts = (await overlayStats(h)).peers[NET.sim];
      return counts?.peers === peers;
    },
    10_000,
  );
  return counts!;
}

/** One node joining, then leaving: the kernel requests h's engine made for each. */
async function joinAndLeave(
  h: TestHost,
  etcd: Etcd,
  routes: { count(): number },
  peers: number,
): Promise<{ join: number; leave: number }> {
  const newcomer = SIM_PEERS + 1;
  const start = await peerCounts(h, peers);
  await writeSims(etcd, newcomer, newcomer);
  await until(`${h.name} routes the newcomer`, () => routes.count() === peers + 1, 10_000);
  const joined = await peerCounts(h, peers + 1);
  await removeSim(etcd, newcomer);
  await until(`${h.name} drops the newcomer's route`, () => routes.count() === peers, 10_000);
  const left = await peerCounts(h, peers);
  return { join: joined.kernelOps - start.kernelOps, leave: left.kernelOps - joined.kernelOps };
}

async function scale(
  c: TestCluster,
  etcd: Etcd,
  log: (line: string) => void,
): Promise<NonNullable<OverlayFigures["scale"]>> {
  const [h3, h4] = [c.host(3), c.host(4)];
  // At 10 peers first, on a host of its own.
  await h3.startEngine();
  ok(
    await h3.netctx("network", "create", NET.sim, "--driver", "overlay", "--subnet", SIM_SUBNET),
    `network create ${NET.sim}`,
  );
  await writeSims(etcd, 1, BASE_PEERS);
  const r3 = routeCounter(h3);
  let base: { join: number; leave: number };
  try {
    await until(`h3 routes ${BASE_PEERS} peers`, () => r3.count() === BASE_PEERS, 15_000);
    base = await joinAndLeave(h3, etcd, r3, BASE_PEERS);
  } finally {
    r3.close();
  }
  await h3.engine?.stop();
  log(
    `  overlay: ${BASE_PEERS} peers: join ${base.join}, leave ${base.leave} kernel requests; writing ${SIM_PEERS}`,
  );
  await writeSims(etcd, BASE_PEERS + 1, SIM_PEERS);
  // A new host: its engine starts with the 1000 already in etcd.
  const r4 = routeCounter(h4);
  try {
    const t0 = nowMs();
    let serving: number | undefined;
    const engine = h4.startEngine().then((e) => {
      serving = nowMs();
      return e;
    });
    let done: number | undefined;
    const deadline = t0 + 60_000;
    while (done === undefined && nowMs() < deadline) {
      let n = 0;
      try {
        n = r4.count();
      } catch {
        // The device may be mid-creation.
      }
      if (n >= SIM_PEERS) done = nowMs();
      else await sleep(20);
    }
    const e = await engine;
    if (done === undefined)
      throw new Error(`h4 did not route ${SIM_PEERS} peers within 60 s: ${e.log().slice(-400)}`);
    if (serving === undefined) serving = done;
    const firstPassLine = e
      .log()
      .split("\n")
      .find((l) => l.includes(`${SIM_PEERS} peer(s)`));
    log(`  overlay: h4 routes ${SIM_PEERS} peers ${((done - t0) / 1000).toFixed(2)} s after its start`);
    const atScale = await joinAndLeave(h4, etcd, r4, SIM_PEERS);
    return {
      peers: SIM_PEERS,
      programSeconds: (done - t0) / 1000,
      programSecondsFromServing: Math.max(0, (done - serving) / 1000),
      join: { base: base.join, atScale: atScale.join },
      leave: { base: base.leave, atScale: atScale.leave },
      ...(firstPassLine ? { firstPassLine: firstPassLine.trim() } : {}),
    };
  } finally {
    r4.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------

function render(
  heading: string,
  f: OverlayFigures,
  failures: Partial<Record<keyof typeof GOALS, string>>,
  parts: string[],
  plan: { runs: number; turns: number; creates: number },
  wallSeconds: number,
): OverlayResult {
  const verdicts: Verdict[] = [];
  const verdict = (key: keyof typeof GOALS, met: boolean | undefined, figure: string) =>
    verdicts.push({
      goal: GOALS[key],
      status: failures[key] || met === undefined ? "not measured" : met ? "met" : "not met",
      figure: failures[key] ?? figure,
    });
  const t = f.throughput;
  const per = (which: "vxlan" | "direct") =>
    t
      ? t.gbits[which]
          .map((g, i) => (g !== undefined && t.gbits.underlay[i] ? g / t.gbits.underlay[i]! : undefined))
          .filter((x): x is number => x !== undefined)
      : [];
  const spread = (xs: number[]) =>
    xs.length > 1 ? `; runs ${fmt(Math.min(...xs), 3)} to ${fmt(Math.max(...xs), 3)}` : "";
  const ratioFigure = (r: number | undefined, e: number | undefined, xs: number[]) =>
    `${fmt(r, 3)}${e !== undefined ? ` ± ${fmt(e, 3)}` : ""}x${spread(xs)}`;
  verdict(
    "vxlan",
    t?.vxlanRatio === undefined ? undefined : t.vxlanRatio >= GOAL.vxlan,
    ratioFigure(t?.vxlanRatio, t?.vxlanRatioError, per("vxlan")),
  );
  verdict(
    "direct",
    t?.directRatio === undefined ? undefined : t.directRatio >= GOAL.direct,
    ratioFigure(t?.directRatio, t?.directRatioError, per("direct")),
  );
  const cr = f.create;
  verdict(
    "create",
    cr ? cr.ratio <= GOAL.create : undefined,
    cr
      ? `${fmt(cr.ratio, 2)}x (median ${fmt(cr.overlayMs.median)} ms overlay, ${fmt(cr.bridgeMs.median)} ms bridge, ${cr.n} each)`
      : "",
  );
  verdict(
    "etcd",
    cr ? cr.createEtcdRequests === 0 : undefined,
    cr
      ? `${fmt(cr.etcdRequestsPerCreate, 2)} (${cr.createEtcdRequests} requests over ${cr.creates} creates)`
      : "",
  );
  const s = f.scale;
  verdict(
    "program",
    s ? s.programSeconds <= GOAL.programSeconds : undefined,
    s
      ? `${fmt(s.programSeconds, 2)} s from \`netctx serve\` started (${fmt(s.programSecondsFromServing, 2)} s after it said it serves)`
      : "",
  );
  verdict(
    "join",
    s ? s.join.atScale === s.join.base : undefined,
    s ? `${s.join.atScale} kernel requests at ${SIM_PEERS} peers, ${s.join.base} at ${BASE_PEERS}` : "",
  );
  verdict(
    "leave",
    s ? s.leave.atScale === s.leave.base : undefined,
    s ? `${s.leave.atScale} kernel requests at ${SIM_PEERS} peers, ${s.leave.base} at ${BASE_PEERS}` : "",
  );
  const createText = cr
    ? `### Create latency

On one host (h1), l2 contexts through the engine's API (\`POST /v1/contexts\`, what \`netctx create\` sends; the CLI's
own start, the same for both, is left out), ${cr.n} on the overlay network and ${cr.n} on a local bridge network,
alternating, each removed (and the engine settled) before the next; a context on each network stays throughout, so
the overlay creates find room in the host's block. ms:

| network | median | p95 |
|---|---|---|
| overlay (${NET.vxlan}) | ${fmt(cr.overlayMs.median)} | ${fmt(cr.overlayMs.p95)} |
| local bridge (${NET.bridge}) | ${fmt(cr.bridgeMs.median)} | ${fmt(cr.bridgeMs.p95)} |

etcd requests the creates waited for (the engine's \`createEtcdRequests\` over \`creates\`, as \`netctx cluster status
--json\` shows them under \`overlay\`): ${cr.createEtcdRequests} over ${cr.creates} creates.
`
    : "";
  const scaleText = s
    ? `### Scale by simulation

${SIM_PEERS} node records (underlay addresses in 10.201.0.0/16, nothing answers there; a VTEP MAC; one /24 of a
${SIM_SUBNET} overlay network each) and their blocks written to etcd in transactions of 64 nodes. A new host's engine
(\`netctx serve\`) is started with them in place; the time is until its kernel holds a route on nv-${NET.sim} for
every one of them (polled through netlink every 20 ms): ${fmt(s.programSeconds, 2)} s from the start of the process,
${fmt(s.programSecondsFromServing, 2)} s after it said it serves. Its pass: \`${s.firstPassLine ?? "(not in its log)"}\`.
Then one node record with its block is added, and removed: the kernel requests the engine's data path made for each
(syncPeers' count, \`cluster status --json\` -> \`overlay.peers.${NET.sim}.kernelOps\`), against the same on a host
with ${BASE_PEERS} peers:

| | at ${BASE_PEERS} peers | at ${SIM_PEERS} peers |
|---|---|---|
| one node joining | ${s.join.base} | ${s.join.atScale} |
| one node leaving | ${s.leave.base} | ${s.leave.atScale} |
`
    : "";
  const goals = verdicts.map((v) => `- ${v.goal}: **${v.status}** (${v.figure})`).join("\n");
  const text = `${heading}

Inside the bench's throwaway namespace: test hosts (bench/cluster-hosts.ts, the tests' harness: each host its own
network and mount namespace with a veth into an underlay bridge), one etcd member, an engine per host.
${plan.runs} throughput runs of ${plan.turns} turns, ${plan.creates} creates per network.

${parts.join("\n")}
${createText}
${scaleText}
Goals:
${goals}

Wall time of this section: ${wallSeconds.toFixed(1)} s.
`;
  return { text, verdicts, figures: f };
}
