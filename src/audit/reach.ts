/**
 * `netctx audit --reach`: the reach matrix (issue 19). A listener in each audited context (TCP and a UDP echo on its
 * IPv4 address, at every probed port), one on the host (each audited network's gateway, and the world's address),
 * then one prober per source (each context through its exec path, as `netctx exec` runs it, and one on the host
 * bound to the destination's gateway) sends every probe at once with a short timeout. A cell whose measure differs
 * from the policies is probed once more with a long timeout before it counts, so a slow machine does not turn a late
 * answer into a difference.
 *
 * The world is an address outside every network (TEST-NET, RFC 5737), put on the host's loopback for the audit's
 * duration: traffic to it stays on this machine, and the contexts' hooks see the world as its destination.
 */
import { spawn } from "node:child_process";
import { compilePolicies } from "../engine/policy-compile.ts";
import { policyContextOf } from "../engine/policy-sync.ts";
import { NetctxError, notFound } from "../errors.ts";
import type { Host } from "../host.ts";
import { specOf } from "../levels/driver.ts";
import { type ContextRecord, SCENE_LABEL } from "../model/records.ts";
import { cidrContains, parseCidr, parseIp } from "../net/cidr.ts";
import { guardExit } from "./exit-guard.ts";
import { type PlannedCell, planReach, type ReachPort, reachPorts, type Verdict } from "./reach-plan.ts";
import { reachArgv } from "./reach-script.ts";
import { type ExecArgv, LineChild, sandboxExec } from "./run.ts";
import { subjectsOf } from "./subjects.ts";

export interface ReachCell extends PlannedCell {
  /** "unmeasured": no listener could hold the destination's port, or the world could not be set up. */
  measured: Verdict | "unmeasured" | "n/a";
  evidence: string;
  ok: boolean;
}

export interface ReachReport {
  ports: ReachPort[];
  world: string | undefined;
  cells: ReachCell[];
  /**
   * Selected contexts not audited (not ready, no IPv4 address): listed, not counted as differences. A context the
   * host is not on the path of (macvlan) is audited against the contexts of its own network only; its other cells
   * are "n/a".
   */
  skipped: string[];
  ok: boolean;
}

export interface ReachOptions {
  names?: string[];
  /** Only the contexts an apply scene made. */
  scene?: string;
  exec?: ExecArgv;
  /** First pass; default 300 ms. */
  timeoutMs?: number;
  /** Second pass for cells that differ; default 1500 ms. */
  confirmMs?: number;
}

const WORLD_CANDIDATES = ["192.0.2.123", "198.51.100.123", "203.0.113.123"];
const UDP_TRIES = 3;

interface Probe {
  key: string;
  addr: string;
  port: number;
  proto: string;
  src?: string;
}
interface Answer {
  reached: boolean;
  how: string;
  ms: number;
}

function selectRecords(host: Host, options: ReachOptions): ContextRecord[] {
  const all = host.store.listContexts();
  const names = options.names ?? [];
  for (const n of names) if (!all.some((c) => c.name === n)) throw notFound("context", n);
  let records = names.length ? all.filter((c) => names.includes(c.name)) : all;
  if (options.scene !== undefined) {
    records = records.filter((c) => specOf(c).labels?.[SCENE_LABEL] === options.scene);
    if (records.length === 0) throw notFound("scene", options.scene);
  }
  return records;
}

/** An address outside every network and not on the host; undefined when all candidates are taken. */
function pickWorld(host: Host): string | undefined {
  const nets = host.store.listNetworks().flatMap((n) => n.subnets.map((s) => parseCidr(s.cidr, "subnet")));
  const local = new Set(host.rtnl.addrList().map((a) => a.cidr.split("/")[0]));
  return WORLD_CANDIDATES.find((w) => {
    const ip = parseIp(w, "world");
    return !local.has(w) && !nets.some((c) => cidrContains(c, ip.family, ip.addr));
  });
}

function hostChild(what: string, argv: string[]): LineChild {
  return new LineChild(what, spawn(argv[0]!, argv.slice(1), { stdio: "pipe" }));
}

const key = (c: PlannedCell) => `${c.to}|${c.proto}/${c.port}`;

export async function runReach(host: Host, options: ReachOptions = {}): Promise<ReachReport> {
  const exec = options.exec ?? sandboxExec(host);
  const records = selectRecords(host, options);
  const { subjects, skipped } = subjectsOf(host, records, { offHost: true });
  const policies = host.store.listPolicies();
  const ports = reachPorts(policies);
  const tables = compilePolicies({
    policies,
    contexts: host.store.listContexts().map(policyContextOf),
    networks: host.store.listNetworks(),
  });
  const world = pickWorld(host);
  let worldError: string | undefined = world === undefined ? "no free TEST-NET address" : undefined;
  const planned = planReach({
    contexts: subjects.map((s) => ({
      name: s.name,
      address: s.own4,
      network: s.net,
      gateway: s.gateway4,
      l2: !s.shared,
      ...(s.offHost ? { offHost: true } : {}),
    })),
    tables,
    ports,
    world,
  });
  if (subjects.length === 0) return { ports, world, cells: [], skipped, ok: true };

  const children: LineChild[] = [];
  let worldAdded = false;
  const removeWorld = (): void => {
    if (!worldAdded) return;
    worldAdded = false;
    try {
      host.rtnl.addrDel("lo", `${world}/32`);
    } catch {
      // Gone already (somebody removed it): nothing to undo.
    }
  };
  // A signal or an exit before the audit's own path ends must not leave the world's address on the host.
  const releaseGuard = guardExit(removeWorld);
  try {
    if (world !== undefined)
      try {
        host.rtnl.addrAdd("lo", `${world}/32`);
        worldAdded = true;
      } catch (err) {
        worldError = `address ${world}/32 on lo: ${(err as Error).message}`;
      }
    const portList = ports.map((p) => ({ proto: p.proto, port: p.port }));
    const listeners = subjects.map((s) => {
      const argv = exec(s.record, reachArgv("listen", { addrs: [s.own4], ports: portList }));
      const child = new LineChild(`listener in ${s.name}`, spawn(argv[0]!, argv.slice(1), { stdio: "pipe" }));
      children.push(child);
      return child;
    });
    // An off-host context's gateway is a router of its segment, not an address of the host.
    const hostAddrs = [
      ...new Set(subjects.filter((s) => !s.offHost).map((s) => s.gateway4)),
      ...(worldAdded ? [world!] : []),
    ];
    const hostListener = hostChild(
      "listener on the host",
      reachArgv("listen", { addrs: hostAddrs, ports: portList }),
    );
    children.push(hostListener);
    type Listened = {
      bound: { addr: string; proto: string; port: number }[];
      failed: (Probe & { errno: string })[];
    };
    const listened = await Promise.all([...listeners, hostListener].map((l) => l.json<Listened>()));
    const bound = new Set(listened.flatMap((l) => l.bound.map((b) => `${b.addr} ${b.proto}/${b.port}`)));
    const refused = new Map<string, string>(
      listened.flatMap((l) => l.failed.map((f) => [`${f.addr} ${f.proto}/${f.port}`, f.errno] as const)),
    );

    // Cells nothing can measure fail as differences do: an audit that could not look proves nothing.
    const probed: ReachCell[] = [];
    const cells: ReachCell[] = planned.map((c) => {
      const at = `${c.dst} ${c.proto}/${c.port}`;
      if (c.expected === "n/a") return { ...c, measured: "n/a", evidence: c.reason, ok: true };
      if (c.to === "world" && !worldAdded)
        return { ...c, measured: "unmeasured", evidence: worldError ?? "no world address", ok: false };
      if (!bound.has(at))
        return {
          ...c,
          measured: "unmeasured",
          evidence: `no listener at ${at}: ${refused.get(at) ?? "not started"}`,
          ok: false,
        };
      const cell: ReachCell = { ...c, measured: "unmeasured", evidence: "", ok: false };
      probed.push(cell);
      return cell;
    });

    // One prober per source: each context's own, and the host's.
    const sources = new Map<string, LineChild>();
    for (const s of subjects) {
      const argv = exec(s.record, reachArgv("probe", {}));
      const child = new LineChild(`prober in ${s.name}`, spawn(argv[0]!, argv.slice(1), { stdio: "pipe" }));
      children.push(child);
      sources.set(s.name, child);
    }
    const hostProber = hostChild("prober on the host", reachArgv("probe", {}));
    children.push(hostProber);
    sources.set("host", hostProber);

    const pass = async (batch: ReachCell[], timeoutMs: number, label: string) => {
      const bySource = new Map<string, ReachCell[]>();
      for (const c of batch) bySource.set(c.from, [...(bySource.get(c.from) ?? []), c]);
      await Promise.all(
        [...bySource].map(async ([from, list]) => {
          const child = sources.get(from)!;
          const targets: Probe[] = list.map((c) => ({
            key: from === "host" ? `${key(c)}|${c.src}` : key(c),
            addr: c.dst,
            port: c.port,
            proto: c.proto,
            ...(from === "host" ? { src: c.src } : {}),
          }));
          child.send({ targets, timeoutMs, udpTries: UDP_TRIES });
          const answers = await child.json<Record<string, Answer>>();
          list.forEach((c, i) => {
            const a = answers[targets[i]!.key];
            if (!a)
              throw new NetctxError("internal", `audit --reach: no answer for ${from} -> ${targets[i]!.key}`);
            c.measured = a.reached ? "allowed" : "blocked";
            const call = `${c.proto} ${from === "host" ? `${c.src} -> ` : ""}${c.dst}:${c.port}`;
            const text = `${call}: ${a.how}${a.reached ? ` in ${a.ms} ms` : ""}`;
            c.evidence = c.evidence ? `${c.evidence}; ${label}: ${text}` : text;
            c.ok = c.measured === c.expected;
          });
        }),
      );
    };
    await pass(probed, options.timeoutMs ?? 300, "first");
    const differing = probed.filter((c) => !c.ok);
    if (differing.length) await pass(differing, options.confirmMs ?? 1500, "again");
    return { ports, world, cells, skipped, ok: cells.every((c) => c.ok) };
  } finally {
    await Promise.all(children.map((c) => c.end()));
    removeWorld();
    releaseGuard();
  }
}
