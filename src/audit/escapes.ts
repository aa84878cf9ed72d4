/**
 * The hardening escapes (issue 15): what each context's probe is told to try (planEscapes), what the auditor
 * checks from the outside afterwards (observeEscapes), and the verdict with its evidence (classifyEscapes).
 *
 * The verdicts measure behaviour, not mechanisms, and "blocked" needs proof that the probe could have seen the
 * escape: its target was alive, found by token rather than by a bare number, and (where a probe has one) its
 * control worked. Anything short of that reads "inconclusive", which fails a promise like "possible" does.
 * A probe is left out only where the scene lacks what it needs (no second context, no engine, ...).
 * The host file system's escapes (a host directory, a daemon's socket under /run, setuid files, disks) live in
 * host-fs.ts; netlink requests aimed at another network namespace by nsid in netlink-nsid.ts.
 */
import { existsSync, statSync } from "node:fs";
import type { Server } from "node:net";
import type { Host } from "../host.ts";
import { specOf } from "../levels/driver.ts";
import { cidrContains, parseIp, parseSubnet } from "../net/cidr.ts";
import { type Call, type EscapeOutcome, type EscapeVerdict, said, short } from "./evidence.ts";
import type { EscapeProbe } from "./expected.ts";
import {
  classifyHostFs,
  closeHostFs,
  type HostFsParams,
  type HostFsPhase1,
  type HostFsScene,
  type HostFsSeen,
  hostFsParams,
  observeHostFs,
  openHostFs,
} from "./host-fs.ts";
import {
  cleanupNdisc,
  type NdiscPair,
  type NdiscSeen,
  ndiscPair,
  observeNdisc,
  prepareNdisc,
} from "./ndisc.ts";
import {
  classifyNsid,
  closeNsid,
  type NsidParams,
  type NsidPhase1,
  type NsidScene,
  type NsidSeen,
  observeNsid,
  openNsid,
} from "./netlink-nsid.ts";
import type { ProbeMode } from "./probe-script.ts";
import { type Subject, secondOf } from "./subjects.ts";
import {
  askReport,
  engineHealth,
  type HostHelper,
  listenTcp,
  type Marker,
  startHostHelper,
  stillRuns,
  type TargetReport,
} from "./targets.ts";

/** A TCP connect a probe makes (probe-script.ts connect_all): optionally from a source address, bound to a device. */
export interface ReachTarget {
  key: string;
  addr: string;
  port: number;
  src?: string;
  dev?: string;
  /** A gateway to add a host route through first (an l2 context's own table), removed afterwards. */
  via?: string;
}

interface SetnsTarget {
  what: string;
  ino: number;
  paths?: string[];
  proc?: { token: string; hostPid: number };
}

/** What the probe program's escape_probes() gets (escape-script.ts). */
export interface EscapeParams {
  token: string;
  tokens: { mode: ProbeMode; token: string }[];
  host: { hostPid: number; token: string; abstract: string };
  ptrace?: { hostPid: number; token: string; fd: number; port: number };
  abstractOther?: string;
  sysctlPaths: string[];
  engine?: { path: string };
  setns?: SetnsTarget[];
  ndisc?: NdiscPair["params"];
  hostFs: HostFsParams;
  nsid?: NsidParams;
}

type Attempt = Call & { verified?: boolean };

/** What escape_probes() answers. */
export interface EscapePhase1 {
  /** sentAt: seconds since the epoch, when the last Advertisement left. */
  ndisc?: { ra: Call; na: Call[]; sentAt: number };
  scan: { scanned: number; self: boolean; found: Record<string, number[]>; error?: string };
  ptrace?: { visible: number[]; attempts: Attempt[] };
  signal: Attempt;
  abstractHost: Call;
  abstractOther?: Call;
  sysctl: Call & { noProcSysNet?: boolean };
  engine?: Call[];
  setns?: (Call & { want: number })[];
  hostFs: HostFsPhase1;
  nsid?: NsidPhase1;
  vsock: Call;
}

/** Everything outside the contexts the escapes aim at, for one audit run. */
export interface EscapeScene {
  runId: string;
  hostNetns: number;
  markers: Map<string, Marker>;
  helpers: Map<string, HostHelper>;
  engine?: { path: string; pid: number };
  /** TCP listeners on host addresses, for the internal-network probes. */
  listeners: Map<string, { server: Server; port: number }>;
  /** For each internal-network context: a host address that is not its gateway. */
  internalTargets: Map<string, string>;
  ndisc: Map<string, NdiscPair>;
  /** What the host file system's escapes aim at; set once made (closeScene removes it). */
  hostFs?: HostFsScene;
  /** The markers the nsid probes aim at (closeScene removes them). */
  nsid?: NsidScene;
}

export interface EscapePlan {
  params: EscapeParams;
  reach: ReachTarget[];
  second?: Subject;
  setnsOther?: Subject;
  bypass?: Subject;
  internalShared?: Subject;
}

export interface EscapeObservations {
  helperReports: Map<string, TargetReport | undefined>;
  markerReports: Map<string, TargetReport | undefined>;
  /** Each marker still runs under the host pid its token was found at. */
  markerAlive: Map<string, boolean>;
  /** The engine still answers its health check from the host. */
  engineAfter: boolean;
  ndisc: Map<string, NdiscSeen>;
  hostFs: HostFsSeen;
  nsid: Map<string, NsidSeen>;
}

/**
 * Start what the escapes aim at outside the contexts, beside the markers (targets.ts startMarkers, started at the
 * same time by the caller, who sets `markers` once they run).
 */
export async function openScene(
  host: Host,
  everyone: Subject[],
  audited: Subject[],
  runId: string,
  hostNetns: number,
): Promise<EscapeScene> {
  const scene: EscapeScene = {
    runId,
    hostNetns,
    markers: new Map(),
    helpers: new Map(),
    listeners: new Map(),
    internalTargets: new Map(),
    ndisc: new Map(),
  };
  // Never rejects; awaited on every path, so what it makes on the host is always closeScene's to remove.
  const hostFs = openHostFs(runId, audited, host.store.dir);
  try {
    const [helpers, enginePid] = await Promise.all([
      Promise.all(audited.map((s) => startHostHelper(`netctx-audit-${runId}-host-${s.name}`))),
      engineHealth(host.config.socketPath),
    ]);
    scene.hostFs = await hostFs;
    scene.nsid = openNsid(runId, audited, everyone);
    for (const [i, s] of audited.entries()) scene.helpers.set(s.name, helpers[i]!);
    if (enginePid !== undefined) scene.engine = { path: host.config.socketPath, pid: enginePid };

    const leased = new Set(host.store.leases().map((l) => parseIp(l.address, "address").text));
    const hostAddrs = host.rtnl
      .addrList()
      .filter((a) => a.family === 4 && a.scope === "global")
      .map((a) => ({ ip: a.cidr.split("/")[0]!, ifname: a.ifname }));
    // The gateway's listener is every internal probe's control; a host address other than it is the target.
    for (const s of audited.filter(isInternalL2)) {
      const target = otherHostAddress(s, hostAddrs, leased);
      if (target) scene.internalTargets.set(s.name, target);
      for (const addr of target ? [s.gateway4, target] : [s.gateway4])
        if (!scene.listeners.has(addr)) scene.listeners.set(addr, await listenTcp(addr));
    }

    for (const s of audited) {
      const pair = ndiscPair(s, secondOf(s, everyone), everyone);
      if (pair) scene.ndisc.set(s.name, pair);
    }
    prepareNdisc([...scene.ndisc.values()]);
  } catch (err) {
    scene.hostFs = await hostFs;
    await closeScene(scene);
    throw err;
  }
  return scene;
}

export async function closeScene(scene: EscapeScene): Promise<void> {
  cleanupNdisc([...scene.ndisc.values()]);
  for (const l of scene.listeners.values()) l.server.close();
  if (scene.hostFs) closeHostFs(scene.hostFs);
  if (scene.nsid) closeNsid(scene.nsid);
  await Promise.all([...scene.helpers.values()].map((h) => h.child.end()));
}

function isInternalL2(s: Subject): boolean {
  return !s.shared && s.net.internal;
}

/** A host address on none of the context's networks and held by no context: local delivery, not its gateway. */
function otherHostAddress(
  s: Subject,
  hostAddrs: { ip: string; ifname: string }[],
  leased: Set<string>,
): string | undefined {
  const mine = s.net.subnets.map((n) => parseSubnet(n.cidr, "subnet"));
  const candidates = hostAddrs.filter((a) => {
    const ip = parseIp(a.ip, "address");
    return !leased.has(ip.text) && !mine.some((c) => cidrContains(c, ip.family, ip.addr));
  });
  // netctx's own devices first: another network's gateway is the address a context on an internal network knows.
  return (candidates.find((a) => a.ifname.startsWith("nc-")) ?? candidates[0])?.ip;
}

/** The escapes one context's probe tries, and the TCP targets they add to its connects. */
export function planEscapes(s: Subject, everyone: Subject[], scene: EscapeScene): EscapePlan {
  const helper = scene.helpers.get(s.name)!;
  const token = `netctx-audit-${scene.runId}-probe-${s.name}`;
  const second = secondOf(s, everyone);
  const secondMarker = second ? scene.markers.get(second.name) : undefined;
  const tokens: EscapeParams["tokens"] = [{ mode: "host", token: helper.token }];
  const scanFor = (token: string) => {
    if (!tokens.some((t) => t.token === token)) tokens.push({ mode: "marker", token });
  };
  const params: EscapeParams = {
    token,
    tokens,
    host: { hostPid: helper.pid, token: helper.token, abstract: helper.abstract },
    // The write goes to the context's own device where it has one, else to the host device its addresses live on.
    sysctlPaths: [
      `/proc/sys/net/ipv6/conf/${s.shared ? s.hostDevice : s.att.ifname}/accept_ra`,
      "/proc/sys/net/core/somaxconn",
    ],
    hostFs: hostFsParams(s, scene.hostFs!),
  };
  const out: EscapePlan = { params, reach: [] };
  if (second && secondMarker) {
    out.second = second;
    params.abstractOther = secondMarker.abstract;
    if (secondMarker.hostPid !== undefined) {
      params.ptrace = {
        hostPid: secondMarker.hostPid,
        token: secondMarker.token,
        fd: secondMarker.fd,
        port: secondMarker.port,
      };
      scanFor(secondMarker.token);
    }
  }
  if (scene.engine) params.engine = { path: scene.engine.path };

  // Leaving its netns: into the host's (an l2 context; a shared-stack one is there already) or into an l2
  // context's, by the handle `ip netns` keeps and by a process of that context.
  const setns: SetnsTarget[] = [];
  if (!s.shared)
    setns.push({
      what: "the host's netns",
      ino: scene.hostNetns,
      proc: { token: helper.token, hostPid: helper.pid },
    });
  const l2Other = [second, ...everyone].find(
    (o) => o && o !== s && !o.shared && o.netns && existsSync(o.netns),
  );
  if (l2Other?.netns) {
    const m = scene.markers.get(l2Other.name);
    setns.push({
      what: `${l2Other.name}'s netns`,
      ino: statSync(l2Other.netns).ino,
      paths: [l2Other.netns],
      ...(m?.hostPid !== undefined ? { proc: { token: m.token, hostPid: m.hostPid } } : {}),
    });
    if (m?.hostPid !== undefined) scanFor(m.token);
    out.setnsOther = l2Other;
  }
  if (setns.length) params.setns = setns;

  // The l3 table bypass (socket contexts have no table of their own: the same measurement, reported only).
  if (s.shared) {
    const myNets = new Set(specOf(s.record).attachments.map((a) => a.network));
    const target = everyone.find((o) => !o.shared && o.segment && !o.net.internal && !myNets.has(o.net.name));
    const m = target ? scene.markers.get(target.name) : undefined;
    if (target && m) {
      out.bypass = target;
      // Both from its own address, so its policy rules pick its table; only the device differs.
      out.reach.push(
        { key: "device-table-plain", addr: target.own4, port: m.port, src: s.own4 },
        { key: "device-table-bypass", addr: target.own4, port: m.port, src: s.own4, dev: target.hostDevice },
      );
    }
  }

  if (isInternalL2(s)) {
    out.reach.push({
      key: "internal-gateway",
      addr: s.gateway4,
      port: scene.listeners.get(s.gateway4)!.port,
    });
    const hostTarget = scene.internalTargets.get(s.name);
    if (hostTarget)
      out.reach.push({
        key: "internal-to-host",
        addr: hostTarget,
        port: scene.listeners.get(hostTarget)!.port,
        via: s.gateway4,
      });
    const shared = everyone.find((o) => o.shared && scene.markers.has(o.name));
    if (shared) {
      out.internalShared = shared;
      out.reach.push({
        key: "internal-to-shared-stack",
        addr: shared.own4,
        port: scene.markers.get(shared.name)!.port,
        via: s.gateway4,
      });
    }
  }
  const pair = scene.ndisc.get(s.name);
  if (pair) params.ndisc = pair.params;
  const nsid = scene.nsid?.targets.get(s.name);
  if (nsid) params.nsid = nsid.params;
  return out;
}

/** How long an Advertisement gets to arrive and take effect after it left (neighbour resolution included). */
const NDISC_SETTLE_MS = 500;

/**
 * The outside view after every probe's first phase (`phase1`, by context name): what the targets saw, and whether
 * they are still there.
 */
export async function observeEscapes(
  scene: EscapeScene,
  phase1: Map<string, EscapePhase1>,
): Promise<EscapeObservations> {
  const sent = [...phase1.values()].map((e) => (e.ndisc ? e.ndisc.sentAt * 1000 : 0));
  const [helperReports, markerReports, ndisc, enginePid, hostFs] = await Promise.all([
    reports(scene.helpers),
    reports(scene.markers),
    observeNdisc([...scene.ndisc.values()], Math.max(0, ...sent) + NDISC_SETTLE_MS),
    scene.engine ? engineHealth(scene.engine.path) : Promise.resolve(undefined),
    observeHostFs(scene.hostFs!, [...phase1.keys()]),
  ]);
  const markerAlive = new Map(
    [...scene.markers].map(([name, m]) => [
      name,
      m.hostPid !== undefined && stillRuns(m.hostPid, "marker", m.token),
    ]),
  );
  return {
    helperReports,
    markerReports,
    markerAlive,
    engineAfter: enginePid !== undefined,
    ndisc,
    hostFs,
    nsid: scene.nsid ? observeNsid(scene.nsid) : new Map(),
  };
}

async function reports(
  targets: Map<string, { child: Marker["child"] }>,
): Promise<Map<string, TargetReport | undefined>> {
  const entries = await Promise.all(
    [...targets].map(async ([name, t]) => [name, await askReport(t.child)] as const),
  );
  return new Map(entries);
}

/** A connect whose target first got a host route (ReachTarget.via): the route command's result rides along. */
type RoutedCall = Call & { route?: { cmd: string; rc: number; out: string } };

interface ClassifyEscapes {
  s: Subject;
  plan: EscapePlan;
  e: EscapePhase1;
  reach: Record<string, RoutedCall>;
  /** The probe's own netns inode. */
  ownNetns: number;
  scene: EscapeScene;
  obs: EscapeObservations;
}

const verdict = (possible: boolean, provenBlocked: boolean): EscapeVerdict =>
  possible ? "possible" : provenBlocked ? "blocked" : "inconclusive";

const refused = (c: Call, errnos: readonly string[]) => !c.ok && errnos.includes(c.errno ?? "");

function portOf(value: string | undefined): number | undefined {
  const m = /:(\d+)$/.exec(value ?? "");
  return m ? Number(m[1]) : undefined;
}

function httpStatus(c: Call): number | undefined {
  const m = /^HTTP\/\d\.\d (\d{3})/.exec(c.value ?? "");
  return m ? Number(m[1]) : undefined;
}

export function classifyEscapes(x: ClassifyEscapes): EscapeOutcome[] {
  const { s, plan, e, scene, obs } = x;
  const out: EscapeOutcome[] = [];
  const add = (probe: EscapeProbe, result: EscapeVerdict, evidence: string) =>
    out.push({ probe, result, evidence });
  const helper = scene.helpers.get(s.name)!;
  const helperReport = obs.helperReports.get(s.name);
  const markerOk = (name: string) =>
    obs.markerReports.get(name) !== undefined && obs.markerAlive.get(name) === true;
  const scanText = `scanned ${e.scan.scanned} processes${e.scan.self ? "" : " (not even itself)"}${e.scan.error ? `, ${e.scan.error}` : ""}`;

  // ptrace and pidfd_getfd on the second context's marker.
  if (plan.second) {
    const name = plan.second.name;
    const m = scene.markers.get(name)!;
    if (!e.ptrace)
      add(
        "ptrace-other-context",
        "inconclusive",
        `the auditor found no host pid for ${name}'s marker (${m.token})`,
      );
    else {
      const stole = e.ptrace.attempts.some(
        (a) => a.ok && a.call.startsWith("pidfd_getfd") && (a.verified || portOf(a.value) === m.port),
      );
      const seized = e.ptrace.attempts.some((a) => a.ok && a.verified && a.call.startsWith("ptrace"));
      // EBADF on a verified pid: the fd number was wrong, the probe proves nothing.
      const broken = e.ptrace.attempts.some((a) => a.verified && !a.ok && a.errno === "EBADF");
      add(
        "ptrace-other-context",
        verdict(stole || seized, !broken && markerOk(name)),
        [
          `${name}'s marker (host pid ${m.hostPid}, listener fd ${m.fd}, port ${m.port}): ${
            e.ptrace.visible.length ? `visible here as pid ${e.ptrace.visible.join(",")}` : "not visible here"
          } (${scanText})`,
          ...e.ptrace.attempts.map(said),
          `marker ${markerOk(name) ? "alive" : "GONE"} afterwards`,
        ].join("; "),
      );
    }
  }

  // A signal to a host process: the helper counts what arrived, whoever sent it.
  {
    const got = helperReport?.signals ?? 0;
    add(
      "signal-host-process",
      verdict(got > 0 || (e.signal.ok && e.signal.verified === true), helperReport !== undefined),
      `${said(e.signal)}; host helper (pid ${helper.pid}) ${
        helperReport ? `alive, received ${got} SIGWINCH` : "GONE"
      } (${scanText})`,
    );
  }

  // Abstract unix sockets: a listener that passed its own connect, and answers afterwards, was there to reach.
  const abstract = (
    probe: EscapeProbe,
    c: Call,
    check: string,
    report: TargetReport | undefined,
    who: string,
  ) =>
    add(
      probe,
      verdict(c.ok, check === "ok" && report?.listening === true),
      `${said(c)}; ${who}'s listener: self-connect ${check}, ${
        report ? `${report.listening ? "listening" : "closed"} afterwards` : "GONE afterwards"
      }${c.ok && report && !report.accepted.includes(x.plan.params.token) ? " (its token not seen yet)" : ""}`,
    );
  if (plan.second && e.abstractOther) {
    const m = scene.markers.get(plan.second.name)!;
    abstract(
      "abstract-unix-other-context",
      e.abstractOther,
      m.abstractCheck,
      obs.markerReports.get(plan.second.name),
      plan.second.name,
    );
  }
  abstract("abstract-unix-host", e.abstractHost, helper.abstractCheck, helperReport, "the host helper");

  // /proc/sys/net: its own value written back; a read-only or hidden /proc/sys is a refusal, a wrong path is not.
  add(
    "proc-sys-net-write",
    verdict(e.sysctl.ok, refused(e.sysctl, ["EROFS", "EACCES", "EPERM"]) || e.sysctl.noProcSysNet === true),
    said(e.sysctl),
  );

  if (scene.engine && e.engine) {
    const statuses = e.engine.map(httpStatus);
    const reached = statuses.some((st) => st !== undefined && st >= 200 && st < 300);
    const allRefused = e.engine.every(
      (c, i) =>
        refused(c, ["ECONNREFUSED", "ENOENT", "EACCES", "EPERM", "ECONNRESET", "EPIPE"]) ||
        statuses[i] === 401 ||
        statuses[i] === 403 ||
        (c.ok && c.value === "closed without an answer"),
    );
    add(
      "engine-api",
      verdict(reached, allRefused && obs.engineAfter),
      `${e.engine.map(said).join("; ")}; engine (pid ${scene.engine.pid}) ${
        obs.engineAfter ? "answers the host" : "NOT ANSWERING the host"
      } afterwards`,
    );
  }

  if (e.setns?.length) {
    const left = e.setns.some((a) => a.ok && Number(a.value) !== x.ownNetns);
    const allRefused = e.setns.every((a) => refused(a, ["EPERM", "EACCES", "ENOENT", "ESRCH"]));
    const targetsThere =
      (s.shared || helperReport !== undefined) &&
      (!plan.setnsOther?.netns || existsSync(plan.setnsOther.netns));
    add(
      "setns-host-netns",
      verdict(left, allRefused && targetsThere),
      `${e.setns
        .map(
          (a) =>
            `${a.call}: ${a.ok ? `now in netns ${a.value} (want ${a.want}, own ${x.ownNetns})` : a.errno}`,
        )
        .join("; ")}`,
    );
  }

  if (plan.bypass) {
    const bound = x.reach["device-table-bypass"];
    const plain = x.reach["device-table-plain"];
    // With a table of its own that reaches the target anyway there is nothing to bypass: nothing to report.
    const moot = specOf(s.record).table !== undefined && plain?.ok === true;
    if (bound && plain && !moot)
      add(
        "device-table-bypass",
        verdict(bound.ok, markerOk(plan.bypass.name)),
        `${said(bound)}; without the device: ${said(plain)}; ${plan.bypass.name}'s marker ${
          markerOk(plan.bypass.name) ? "alive" : "GONE"
        }`,
      );
  }

  const pair = scene.ndisc.get(s.name);
  const seen = obs.ndisc.get(s.name);
  if (pair && seen && e.ndisc) {
    // A send refused inside the context is a block; any other failure means the probe proves nothing.
    const sent = (c: Call) => c.ok || refused(c, ["EPERM", "EACCES", "EAFNOSUPPORT"]);
    // Blocked only with y's route notifications read whole: its kernel withdraws an RA's route again as soon as x
    // answers a neighbour probe without the router flag, so a reading of its routes alone can miss the escape.
    add(
      "rogue-ra",
      verdict(seen.raRoute, sent(e.ndisc.ra) && seen.raWatched),
      `${said(e.ndisc.ra)}; ${seen.raEvidence}`,
    );
    add(
      "rogue-na",
      verdict(seen.poisoned, e.ndisc.na.every(sent) && pair.gwEntry !== "missing" && seen.gwEntryAfter),
      `${pair.gwEntryNote}; ${e.ndisc.na.map(said).join("; ")}; ${seen.naEvidence}`,
    );
  }

  const gw = x.reach["internal-gateway"];
  if (gw) {
    const internal = (probe: EscapeProbe, c: RoutedCall | undefined, targetOk: boolean, what: string) => {
      if (c)
        add(
          probe,
          verdict(c.ok, gw.ok && targetOk),
          `${c.route ? `${c.route.cmd}: ${c.route.rc === 0 ? "ok" : short(c.route.out)}; ` : ""}${said(c)} (${what}); control, its gateway: ${said(gw)}`,
        );
    };
    internal("internal-to-host", x.reach["internal-to-host"], true, "a host address, not its gateway");
    if (plan.internalShared)
      internal(
        "internal-to-shared-stack",
        x.reach["internal-to-shared-stack"],
        markerOk(plan.internalShared.name),
        `${plan.internalShared.name}'s marker`,
      );
  }

  out.push(
    ...classifyHostFs({ s, token: plan.params.token, e: e.hostFs, scene: scene.hostFs!, seen: obs.hostFs }),
  );
  if (scene.nsid) out.push(...classifyNsid({ s, e: e.nsid, scene: scene.nsid, seen: obs.nsid }));
  add("vsock-socket", e.vsock.ok ? "possible" : "blocked", said(e.vsock));
  return out;
}
