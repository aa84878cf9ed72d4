/**
 * `netctx audit`: measure the seed's isolation table for live contexts and try to escape from each.
 * Every context gets a marker (a TCP listener on its wildcard, an abstract unix socket) and a probe process, both
 * started through its exec path; the host holds a TCP service on 127.0.0.1, a UDP sink that spoofed packets aim
 * at, and what the hardening escapes aim at (escapes.ts: a helper process per context, listeners on host addresses).
 * Between the probe's two phases the auditor does what needs the outside: it forges the ICMP "fragmentation
 * needed" that teaches each context's flow a PMTU exception, sends datagrams to the second context's address
 * on the probe's ports, reads the host's routes and neighbours, and asks the escapes' targets what they saw.
 */
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { existsSync, statSync } from "node:fs";
import { notFound } from "../errors.ts";
import type { Host } from "../host.ts";
import { specOf } from "../levels/driver.ts";
import type { Level } from "../model/records.ts";
import {
  classifyEscapes,
  closeScene,
  type EscapeObservations,
  type EscapePhase1,
  type EscapePlan,
  type EscapeScene,
  observeEscapes,
  openScene,
  planEscapes,
  type ReachTarget,
} from "./escapes.ts";
import { type Call, callText, type EscapeVerdict, short } from "./evidence.ts";
import {
  CELL_KEYS,
  type Cell,
  type CellKey,
  type EscapeProbe,
  expectedRow,
  PROMISED_BLOCKED,
} from "./expected.ts";
import {
  type CmdResult,
  type ExecArgv,
  forgeIcmp,
  type LineChild,
  runHost,
  sandboxExec,
  spawnInContext,
} from "./run.ts";
import { type Subject, secondOf, subjectsOf } from "./subjects.ts";
import { listenTcp, type Marker, newRunId, startMarkers } from "./targets.ts";

export type MeasuredCell = Cell | "?";

export interface Evidence {
  command: string;
  result: string;
}

export interface EscapeResult {
  probe: EscapeProbe;
  result: EscapeVerdict;
  /** The level promises to block this one. */
  promised: boolean;
  evidence: string;
}

export interface ContextAudit {
  name: string;
  level: Level;
  cells: Record<CellKey, MeasuredCell>;
  expected: Record<CellKey, Cell>;
  evidence: Record<CellKey, Evidence[]>;
  escapes: EscapeResult[];
  ok: boolean;
}

export interface AuditReport {
  contexts: ContextAudit[];
  /** Contexts not audited (not ready, or without an IPv4 address). */
  skipped: string[];
  ok: boolean;
}

interface Phase1 {
  netns: number;
  interfaces: string[];
  changeDevice: CmdResult;
  useDevice?: Call;
  routes: CmdResult;
  routeGet: CmdResult;
  routeAdd: CmdResult;
  markers: { looked: number[]; seen: number[]; files: string };
  bindForeign: Call;
  bindWildcardPort?: Call;
  rawSocket: Call;
  packetSocket: Call;
  spoofIp: Call;
  spoofMac?: Call;
  arp?: Call;
  reach: Record<string, Call>;
  rxPorts: number[];
  rxBound: string[];
  cacheFlow: { src: string; sport: number; dst: string; dport: number } | { error: string };
  escapes: EscapePhase1;
}

interface Phase2 {
  received: { from: string; data: string }[];
  cacheSeen: (CmdResult & { key: string })[];
}

/** ip_rt_min_pmtu's default: the kernel ignores a "fragmentation needed" below it. */
const MIN_PMTU = 552;
const IP_PATHS = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"];

export interface AuditOptions {
  /** Each context's probe as it reports, twice a context (the CLI draws it once the audit runs past 2 s). */
  progress?: (done: number, total: number, what: string) => void;
  /**
   * How probes and markers enter a context; default: the context's exec sandbox, as `netctx exec` does. Tests pass
   * a bare path (nsenter, a cgroup move) to show that each escape probe reads "possible" once its guard is gone.
   */
  exec?: ExecArgv;
}

export async function runAudit(
  host: Host,
  names: string[] = [],
  options: AuditOptions = {},
): Promise<AuditReport> {
  const exec = options.exec ?? sandboxExec(host);
  const all = host.store.listContexts();
  for (const n of names) if (!all.some((c) => c.name === n)) throw notFound("context", n);
  const records = names.length ? all.filter((c) => names.includes(c.name)) : all;
  // Second contexts and reach targets come from every context, audited or not.
  const { subjects: everyone, skipped } = subjectsOf(host, all);
  const subjects = everyone.filter((s) => records.some((r) => r.name === s.name));
  const auditedSkipped = skipped.filter((n) => records.some((r) => r.name === n));
  if (subjects.length === 0)
    return { contexts: [], skipped: auditedSkipped, ok: auditedSkipped.length === 0 };

  const ip = IP_PATHS.find((p) => existsSync(p)) ?? "ip";
  const hostNetns = statSync("/proc/self/ns/net").ino;
  const hostLinks = host.rtnl
    .linkList()
    .map((l) => l.name)
    .filter((n) => n !== "lo");
  const service = await listenTcp();
  const sink = await listenUdp();
  const runId = newRunId();
  const children: LineChild[] = [];
  const probes = new Map<string, LineChild>();
  let scene: EscapeScene | undefined;
  try {
    // Markers of every context that can be a second context or a reach target; beside them, the escapes' targets.
    const [started, opened] = await Promise.allSettled([
      startMarkers(exec, everyone, [service.port], runId, children),
      openScene(host, everyone, subjects, runId, hostNetns),
    ]);
    if (opened.status === "fulfilled") scene = opened.value;
    if (started.status === "rejected") throw started.reason;
    if (opened.status === "rejected") throw opened.reason;
    const markers = started.value;
    const openedScene = opened.value;
    openedScene.markers = markers;
    const plans = new Map(
      subjects.map((s, i) => [
        s.name,
        plan(s, i, everyone, markers, service.port, sink.port, ip, planEscapes(s, everyone, openedScene)),
      ]),
    );
    for (const s of subjects)
      probes.set(s.name, spawnInContext(exec, s.record, "probe", plans.get(s.name)!.params));
    let reported = 0;
    const reportedBy = (what: string) => options.progress?.(++reported, subjects.length * 2, what);
    const phase1 = new Map<string, Phase1>();
    await Promise.all(
      subjects.map(async (s) => {
        phase1.set(s.name, await probes.get(s.name)!.json<Phase1>());
        reportedBy(`${s.name}: probes sent`);
      }),
    );

    // Outside work between the phases. The escapes' targets are asked first: they answer while the rest runs.
    const observing = observeEscapes(
      openedScene,
      new Map([...phase1].map(([name, p1]) => [name, p1.escapes])),
    );
    const hostRoutes = runHost([ip, "-j", "route", "show", "table", "all"]);
    // Each context's exception gets an MTU no other context's has, so a second context that routes to the same
    // destination (the gateway of a routed network) cannot be mistaken for seeing it. A PMTU exception only ever
    // lowers the MTU, so the new ones undercut whatever an earlier audit left (they live for 10 minutes).
    const currents = [...phase1.values()].map((p1) => mtuOf(p1.routeGet.out) ?? 1408);
    const base = Math.min(1408, ...currents) - 8;
    const forged = new Map<string, string>();
    await Promise.all(
      subjects.map(async (s) => {
        const p1 = phase1.get(s.name)!;
        const pl = plans.get(s.name)!;
        pl.mtu = Math.max(MIN_PMTU, base - subjects.indexOf(s));
        if ("sport" in p1.cacheFlow) forged.set(s.name, await forgeIcmp(s.netns, p1.cacheFlow, pl.mtu));
        for (const port of p1.rxPorts) {
          await sendUdp(sink.socket, pl.foreign4, port, `rx:${s.name}`);
        }
      }),
    );
    const cacheChecks = subjects.map((s) => ({
      key: s.name,
      dst: plans.get(s.name)!.params.probeDst,
      ...(s.shared ? { from: s.own4 } : {}),
    }));
    const hostCache = new Map(
      subjects.map((s) => {
        const dst = plans.get(s.name)!.params.probeDst;
        const queries = [runHost([ip, "-j", "-d", "route", "get", dst])];
        if (s.shared) queries.push(runHost([ip, "-j", "-d", "route", "get", dst, "from", s.own4]));
        return [s.name, queries];
      }),
    );
    const escapeObs = await observing;
    for (const s of subjects) probes.get(s.name)!.send({ cacheChecks });
    const phase2 = new Map<string, Phase2>();
    await Promise.all(
      subjects.map(async (s) => {
        phase2.set(s.name, await probes.get(s.name)!.json<Phase2>());
        reportedBy(`${s.name}: what arrived read`);
      }),
    );
    await sleep(100);

    const contexts = subjects.map((s) => {
      const second = secondOf(s, everyone);
      return classify({
        s,
        plan: plans.get(s.name)!,
        p1: phase1.get(s.name)!,
        p2: phase2.get(s.name)!,
        secondP2: second ? phase2.get(second.name) : undefined,
        secondName: second?.name,
        hostNetns,
        hostLinks,
        hostRoutes,
        hostCache: hostCache.get(s.name)!,
        forged: forged.get(s.name),
        sink: sink.received,
        arpCheck: s.shared ? undefined : arpPoisoned(host, s, s.spare4),
        scene: openedScene,
        escapeObs,
      });
    });
    return {
      contexts,
      skipped: auditedSkipped,
      ok: contexts.every((c) => c.ok) && auditedSkipped.length === 0,
    };
  } finally {
    await Promise.all([...probes.values(), ...children].map((c) => c.end()));
    if (scene) await closeScene(scene);
    service.server.close();
    sink.socket.close();
  }
}

interface Plan {
  mtu: number;
  foreign4: string;
  escapes: EscapePlan;
  params: {
    ip: string;
    shared: boolean;
    own4: string;
    probeDst: string;
    routeAdd: string;
    foreign4: string;
    markerPorts: number[];
    wildPort?: number;
    foreignDev: { ifname: string; dst: string };
    spoof: { src: string; dst: string; port: number; token: string };
    l2?: { ifname: string; mac: string; gwMac: string; fakeMac: string; arpSpa: string };
    reach: ReachTarget[];
    escapes: EscapePlan["params"];
  };
}

function plan(
  s: Subject,
  index: number,
  everyone: Subject[],
  markers: Map<string, Marker>,
  servicePort: number,
  sinkPort: number,
  ip: string,
  escapes: EscapePlan,
): Plan {
  const second = secondOf(s, everyone);
  // A shared-stack context's foreign address must be local to the host, or the kernel refuses the bind anyway.
  const foreign4 = second && (!s.shared || second.shared) ? second.own4 : s.shared ? s.gateway4 : s.spare4;
  const spoofSrc = second && second.net.name === s.net.name ? second.own4 : s.spare4;
  const others = everyone.filter((o) => o !== s);
  const myNets = new Set(specOf(s.record).attachments.map((a) => a.network));
  const otherNet = others.find((o) => !myNets.has(o.net.name) && !o.net.internal);
  const internalNet = others.find((o) => !myNets.has(o.net.name) && o.net.internal);
  const foreignNet = everyone.find((o) => !myNets.has(o.net.name) && o.segment);
  const reach: ReachTarget[] = [
    { key: "host-only-service", addr: "127.0.0.1", port: servicePort },
    ...escapes.reach,
  ];
  for (const [key, o] of [
    ["other-network", otherNet],
    ["internal-network", internalNet],
  ] as const) {
    if (o) reach.push({ key, addr: o.own4, port: markers.get(o.name)!.port });
  }
  const markerPorts = [servicePort, ...(second ? [markers.get(second.name)!.port] : [])].filter(
    (p) => p !== markers.get(s.name)?.port,
  );
  const params: Plan["params"] = {
    ip,
    shared: s.shared,
    own4: s.own4,
    probeDst: s.probeDst,
    routeAdd: `198.51.100.${(index % 64) * 4}/30`,
    foreign4,
    markerPorts,
    ...(second ? { wildPort: markers.get(second.name)!.port } : {}),
    foreignDev: foreignNet
      ? { ifname: foreignNet.hostDevice, dst: foreignNet.probeDst }
      : { ifname: "lo", dst: "127.0.0.2" },
    spoof: { src: spoofSrc, dst: s.gateway4, port: sinkPort, token: `netctx-audit-${s.name}` },
    reach,
    escapes: escapes.params,
  };
  if (!s.shared && s.mac && s.gwMac)
    params.l2 = {
      ifname: s.att.ifname,
      mac: s.mac,
      gwMac: s.gwMac,
      fakeMac: `02:5e:00:${hex(index >> 8)}:${hex(index)}:01`,
      // A spare address nobody holds: a neighbour's real address would be re-claimed by its own ARP at once.
      arpSpa: s.spare4,
    };
  return { mtu: 0, foreign4, escapes, params };
}

function hex(n: number): string {
  return (n & 255).toString(16).padStart(2, "0");
}

interface ClassifyInput {
  s: Subject;
  plan: Plan;
  p1: Phase1;
  p2: Phase2;
  secondP2: Phase2 | undefined;
  secondName: string | undefined;
  hostNetns: number;
  hostLinks: string[];
  hostRoutes: CmdResult;
  hostCache: CmdResult[];
  forged: string | undefined;
  sink: { from: string; data: string }[];
  arpCheck: { poisoned: boolean; evidence: string } | undefined;
  scene: EscapeScene;
  escapeObs: EscapeObservations;
}

function classify(x: ClassifyInput): ContextAudit {
  const { s, p1, p2, plan: pl } = x;
  const own = p1.netns !== x.hostNetns;
  const evidence: Record<CellKey, Evidence[]> = {
    devices: [],
    routingTables: [],
    routingCache: [],
    sockets: [],
  };
  const ev = (k: CellKey, command: string, result: string) => evidence[k].push({ command, result });

  // devices
  const hostSeen = x.hostLinks.filter((l) => p1.interfaces.includes(l));
  ev(
    "devices",
    "stat /proc/self/ns/net",
    own ? `own netns (inode ${p1.netns})` : `the host's netns (inode ${p1.netns})`,
  );
  ev("devices", "if_nameindex()", `${p1.interfaces.join(" ")}; host devices among them: ${hostSeen.length}`);
  ev("devices", p1.changeDevice.cmd, cmdText(p1.changeDevice));
  if (p1.useDevice) ev("devices", p1.useDevice.call, callText(p1.useDevice));
  const devices: Cell =
    own && hostSeen.length === 0
      ? "v"
      : !own && (p1.changeDevice.rc === 0 || p1.useDevice?.ok === true)
        ? "-"
        : !own
          ? "i"
          : "-";

  // routing tables
  const table = firstField(p1.routeGet.out, "table") ?? (p1.routeGet.rc === 0 ? "main" : undefined);
  const hostSawAdd = p1.routeAdd.rc === 0 && x.hostRoutes.out.includes(`"${pl.params.routeAdd}"`);
  ev("routingTables", p1.routeGet.cmd, cmdText(p1.routeGet));
  ev("routingTables", p1.routeAdd.cmd, cmdText(p1.routeAdd));
  if (p1.routeAdd.rc === 0)
    ev(
      "routingTables",
      "host: ip -j route show table all",
      hostSawAdd ? "the host sees it" : "the host does not see it",
    );
  const routingTables: MeasuredCell = own
    ? hostSawAdd
      ? "-"
      : "v"
    : p1.routeAdd.rc === 0 || table === undefined
      ? table === undefined && p1.routeAdd.rc !== 0
        ? "?"
        : "-"
      : table !== "main"
        ? "i"
        : "-";

  // routing cache
  const cacheKey = (r: CmdResult) => mtuOf(r.out) === pl.mtu;
  const self = p2.cacheSeen.find((c) => c.key === s.name);
  const selfSees = self !== undefined && cacheKey(self);
  const hostSees = x.hostCache.some(cacheKey);
  const secondSees = x.secondP2?.cacheSeen.some((c) => c.key === s.name && cacheKey(c)) ?? false;
  if ("sport" in p1.cacheFlow)
    ev(
      "routingCache",
      `ICMP frag-needed mtu ${pl.mtu} for udp ${p1.cacheFlow.src}:${p1.cacheFlow.sport} -> ${p1.cacheFlow.dst}:9`,
      x.forged ?? "not sent",
    );
  else ev("routingCache", `udp connect ${pl.params.probeDst}:9`, p1.cacheFlow.error);
  if (self) ev("routingCache", `context: ${self.cmd}`, summariseRoute(self));
  for (const h of x.hostCache) ev("routingCache", `host: ${h.cmd}`, summariseRoute(h));
  const secondCheck = x.secondP2?.cacheSeen.find((c) => c.key === s.name);
  if (secondCheck) ev("routingCache", `${x.secondName}: ${secondCheck.cmd}`, summariseRoute(secondCheck));
  const routingCache: MeasuredCell = !selfSees ? "?" : hostSees || secondSees ? "-" : own ? "v" : "i";

  // sockets
  const sees = p1.markers.seen.length > 0;
  const received = p2.received.filter((r) => r.data === `rx:${s.name}`);
  const wildBusy = p1.bindWildcardPort?.ok === false && p1.bindWildcardPort.errno === "EADDRINUSE";
  ev(
    "sockets",
    `read ${p1.markers.files} for listeners on ports ${p1.markers.looked.join(",")}`,
    sees ? `sees ${p1.markers.seen.join(",")}` : "sees none",
  );
  ev("sockets", p1.bindForeign.call, callText(p1.bindForeign));
  if (p1.bindWildcardPort)
    ev("sockets", `${p1.bindWildcardPort.call} (the second context's port)`, callText(p1.bindWildcardPort));
  ev(
    "sockets",
    `host sends udp to ${pl.foreign4} on the ports of ${p1.rxBound.join(", ")}`,
    received.length ? `received ${received.length}` : "received none",
  );
  const socketsCell: Cell =
    p1.bindForeign.ok || received.length > 0 || wildBusy ? "-" : own && !sees ? "v" : "i";

  const cells = { devices, routingTables, routingCache, sockets: socketsCell };
  const expected = expectedRow(s.record.level, s.ownDefaultRoute4);
  const escapes = escapesOf(x);
  const ok =
    CELL_KEYS.every((k) => cells[k] === expected[k]) &&
    escapes.every((e) => !(e.promised && e.result !== "blocked"));
  return { name: s.name, level: s.record.level, cells, expected, evidence, escapes, ok };
}

function escapesOf(x: ClassifyInput): EscapeResult[] {
  const { s, p1, pl } = { s: x.s, p1: x.p1, pl: x.plan };
  const promised = PROMISED_BLOCKED[s.record.level];
  const out: EscapeResult[] = [];
  const add = (probe: EscapeProbe, possible: boolean, evidence: string) =>
    out.push({
      probe,
      result: possible ? "possible" : "blocked",
      promised: promised.includes(probe),
      evidence,
    });
  const token = pl.params.spoof.token;
  const arrived = (kind: string) => x.sink.find((m) => m.data === `${token}:${kind}`);
  const ipHit = arrived("ip");
  add(
    "spoofed-source-ip",
    ipHit !== undefined,
    `${p1.spoofIp.call}: ${callText(p1.spoofIp)}; host sink ${ipHit ? `received it from ${ipHit.from}` : "received nothing"}`,
  );
  if (p1.spoofMac) {
    const hit = arrived("mac");
    add(
      "spoofed-mac",
      hit !== undefined,
      `${p1.spoofMac.call}: ${callText(p1.spoofMac)}; host sink ${hit ? "received it" : "received nothing"}`,
    );
  }
  if (p1.arp && x.arpCheck)
    add(
      "arp-for-another",
      x.arpCheck.poisoned,
      `${p1.arp.call}: ${callText(p1.arp)}; ${x.arpCheck.evidence}`,
    );
  add("raw-socket", p1.rawSocket.ok, `${p1.rawSocket.call}: ${callText(p1.rawSocket)}`);
  add("packet-socket", p1.packetSocket.ok, `${p1.packetSocket.call}: ${callText(p1.packetSocket)}`);
  add("foreign-bind", p1.bindForeign.ok, `${p1.bindForeign.call}: ${callText(p1.bindForeign)}`);
  for (const key of ["other-network", "internal-network", "host-only-service"] as const) {
    const r = p1.reach[key];
    if (r) add(key, r.ok, `${r.call}: ${callText(r)}`);
  }
  const hardening = classifyEscapes({
    s,
    plan: pl.escapes,
    e: p1.escapes,
    reach: p1.reach,
    ownNetns: p1.netns,
    scene: x.scene,
    obs: x.escapeObs,
  });
  for (const h of hardening) out.push({ ...h, promised: promised.includes(h.probe) });
  return out;
}

/** Did the host learn the spoofed sender as the context's MAC? The entry is removed afterwards. */
function arpPoisoned(host: Host, s: Subject, spa: string): { poisoned: boolean; evidence: string } {
  const dev = s.hostDevice;
  const entry = host.rtnl.neighList(dev).find((n) => n.ip === spa);
  const poisoned = entry?.mac !== undefined && entry.mac.toLowerCase() === s.mac?.toLowerCase();
  if (poisoned) runHost(["ip", "neigh", "del", spa, "dev", dev]);
  return {
    poisoned,
    evidence: `host: ip neigh show ${spa} dev ${dev}: ${entry ? `${entry.mac ?? "no lladdr"} (${entry.state ?? ""})` : "no entry"}`,
  };
}

function cmdText(r: CmdResult): string {
  return r.rc === 0 ? `ok${r.out ? `: ${short(r.out)}` : ""}` : `failed: ${short(r.out) || `exit ${r.rc}`}`;
}

function firstField(jsonText: string, field: string): string | undefined {
  try {
    const v = (JSON.parse(jsonText) as Record<string, unknown>[])[0]?.[field];
    return v === undefined ? undefined : String(v);
  } catch {
    return undefined;
  }
}

function mtuOf(jsonText: string): number | undefined {
  try {
    const r = (JSON.parse(jsonText) as { metrics?: { mtu?: number }[] }[])[0];
    return r?.metrics?.find((m) => m.mtu !== undefined)?.mtu;
  } catch {
    return undefined;
  }
}

function summariseRoute(r: CmdResult): string {
  if (r.rc !== 0) return `failed: ${short(r.out)}`;
  const mtu = mtuOf(r.out);
  const table = firstField(r.out, "table");
  return `${table ? `table ${table}, ` : ""}${mtu ? `cached mtu ${mtu}` : "no cached exception"}`;
}

function listenUdp(): Promise<{
  socket: UdpSocket;
  port: number;
  received: { from: string; data: string }[];
}> {
  return new Promise((resolve, reject) => {
    const socket = createSocket("udp4");
    const received: { from: string; data: string }[] = [];
    socket.on("message", (msg, rinfo) => received.push({ from: rinfo.address, data: msg.toString() }));
    socket.on("error", reject);
    socket.bind(0, "0.0.0.0", () => resolve({ socket, port: socket.address().port, received }));
  });
}

function sendUdp(socket: UdpSocket, addr: string, port: number, data: string): Promise<void> {
  return new Promise((resolve) => socket.send(data, port, addr, () => resolve()));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
