/**
 * gc, repair and CNI CHECK: one reconcile of the records' declarations (declare.ts) against the kernel (observe.ts),
 * in the loop's written order (loop.ts).
 *
 * The kernel is observed before the store is read: a record always exists before its kernel objects (and outlives
 * them on removal), so an object a concurrent create makes after the observation is never taken for an orphan.
 * Devices of networks are made again first, in a pass of their own that removes nothing, so the observation
 * after it sees them with what their driver put on them.
 */
import { conflict } from "../../errors.ts";
import type { Host } from "../../host.ts";
import type { ContextRecord } from "../../model/records.ts";
import type { Declared, Fix, ObjectKind, Present } from "../../networks/ownership.ts";
import { networkDriver } from "../../networks/registry.ts";
import { timed } from "../timings.ts";
import { declareAll } from "./declare.ts";
import { reconcileFirewall } from "./firewall-step.ts";
import { type Act, reconcile, recordingAct } from "./loop.ts";
import { type Observation, observeAll, observeLinks } from "./observe.ts";
import { settleRecords } from "./records.ts";

export interface GcAction {
  action: string;
  object: string;
  reason: string;
  /** Set when the action was tried and failed; gc goes on with the rest. */
  error?: string;
}

export interface GcReport {
  dryRun: boolean;
  actions: GcAction[];
  /** Records another live process is working on: left alone. */
  busy: string[];
}

/** Where a long gc is: its phase of GC_PHASES, and each action as it is taken (the CLI draws it past 2 s). */
export type GcProgress = (phase: number, phases: number, what: string) => void;

const GC_PHASES = 4;

export function gc(host: Host, opts: { dryRun?: boolean; progress?: GcProgress } = {}): GcReport {
  return timed(host, "gc", opts.dryRun ? "dry-run" : "gc", () => {
    const report: GcReport = { dryRun: opts.dryRun ?? false, actions: [], busy: [] };
    let phase = 0;
    const progress = opts.progress ?? (() => {});
    const recording = recordingAct(report);
    const act: Act = (action, object, reason, run, owner) => {
      progress(phase, GC_PHASES, `${action} ${object}`);
      recording(action, object, reason, run, owner);
    };
    const next = (what: string) => progress(++phase, GC_PHASES, what);
    refuseForAnEmptyStore(host, "gc");
    next("records: finishing or undoing interrupted operations");
    settleRecords(host, act, report.busy);
    converge(host, act, report.dryRun, { removals: true }, next);
    return report;
  });
}

/**
 * Put back what the records declare and the kernel lost (after `nft flush ruleset`, `ip link del` of a network's
 * device): our nft tables with every element, guard and published port, and missing devices, addresses and routes.
 * Removes only firewall elements no record owns; other tables are untouched.
 */
export function repair(host: Host): { rebuild: boolean; remove: string[]; add: string[] } {
  const diff = { rebuild: false, remove: [] as string[], add: [] as string[] };
  const act: Act = (action, object, _reason, run) => {
    run();
    if (action === "rebuild") diff.rebuild = true;
    else (action === "remove" ? diff.remove : diff.add).push(object.replace(/^nft element /, ""));
  };
  refuseForAnEmptyStore(host, "repair");
  converge(host, act, false, { removals: false });
  return diff;
}

/**
 * What each ready context lacks of what it and its networks declare, one line per object the loop would make or fix
 * (CNI CHECK, and `ls`/`inspect`, which show such a context as degraded). Nothing is changed. `only`: just these.
 */
export function missingByContext(host: Host, only?: readonly string[]): Map<string, string[]> {
  return missingOf(readDrift(host), only);
}

/**
 * One reading of drift, in two parts. `lasting` comes from kernel objects whose changes the kernel announces (links,
 * addresses, routes, rules, neighbours, namespaces, cgroups, nft tables): a resident engine keeps it until such a
 * change, or a record's, comes (engine/drift-watch.ts). `recheck` reads again what nothing announces: the programs a
 * present object's check compares (a cgroup's, a port's tc filters and tcx programs) and the objects only a driver
 * sees (a bridge's shortcut map entries).
 */
export interface DriftReading {
  /** The context records the reading was taken against. */
  contexts: ContextRecord[];
  /** Per ready context, what it lacks; recheck's lines are not in it. */
  lasting: Map<string, string[]>;
  /** The unannounced part, read now, for the contexts `wanted` keeps. */
  recheck(wanted: (context: string) => boolean): Map<string, string[]>;
  /** Addresses of the permanent neighbours the records declare: no other neighbour's change moves the reading. */
  neighbourIps: Set<string>;
}

export function readDrift(host: Host): DriftReading {
  return timed(host, "reconcile", "check", () => driftIn(host));
}

/** Both parts of a reading, per ready context (`only`: just these). */
export function missingOf(reading: DriftReading, only?: readonly string[]): Map<string, string[]> {
  const wanted = (name: string) => only === undefined || only.includes(name);
  const again = reading.recheck(wanted);
  const missing = new Map<string, string[]>();
  for (const [name, lines] of reading.lasting)
    if (wanted(name)) missing.set(name, [...lines, ...(again.get(name) ?? [])]);
  return missing;
}

type Note = (who: string | undefined, line: string) => void;

function driftIn(host: Host): DriftReading {
  const networks = host.store.listNetworks();
  const present = withoutRemovals(observeAll(host).present);
  const contexts = host.store.listContexts();
  const own = declareAll(host, networks, contexts);
  const ready = contexts.filter((c) => c.status === "ready");
  // Whose loss a missing object is: its context's, or every context's on its network.
  const losers = new Map<string, string[]>();
  const lose = (key: string, name: string) => losers.set(key, [...(losers.get(key) ?? []), name]);
  for (const c of ready) {
    lose(`context ${c.name}`, c.name);
    for (const a of c.spec.attachments) {
      lose(`network ${a.network}`, c.name);
      // The firewall owner names a port by its host-side link, published ports by the context.
      if (a.hostIfname) lose(a.hostIfname, c.name);
    }
    lose(c.name, c.name);
  }
  const noteInto =
    (into: Map<string, string[]>, wanted: (name: string) => boolean = () => true): Note =>
    (who, line) => {
      for (const name of new Set(who === undefined ? [] : (losers.get(who) ?? [])))
        if (wanted(name)) into.get(name)?.push(line);
    };
  const lasting = new Map(ready.map((c) => [c.name, [] as string[]]));
  const note = noteInto(lasting);
  // The checks the loop runs on present objects are kept for recheck, which runs them each time.
  const checks: { owner: string; check: () => Fix | undefined }[] = [];
  const declared = own.objects
    .filter((d) => d.kind !== "shortcut")
    .map((d): Declared => {
      const check = d.check;
      if (!check) return d;
      return { ...d, check: () => void checks.push({ owner: d.owner, check }) };
    });
  reconcile({ declared, present, act: missingLine(note) });
  host.firewall((fw) => {
    for (const a of fw.reconcile(own.firewall, { dryRun: true, publishCgroup: host.config.publishCgroup })) {
      if (a.action === "remove") continue;
      // A table rebuilt whole (after `nft flush ruleset`) is every context's loss; an element, its owner's.
      if (a.action === "rebuild")
        for (const list of lasting.values()) list.push(`${a.object} is missing or damaged`);
      else for (const word of new Set(a.object.split(" "))) note(word, `${a.object} is missing`);
    }
  });
  const shortcuts = own.objects.filter((d) => d.kind === "shortcut");
  const links = present.get("link") ?? [];
  return {
    contexts,
    lasting,
    neighbourIps: new Set(own.objects.filter((d) => d.kind === "neighbour").map((d) => d.id.split(" ")[0]!)),
    recheck(wanted) {
      const again = new Map([...lasting.keys()].filter(wanted).map((name) => [name, [] as string[]]));
      const noteAgain = noteInto(again, wanted);
      for (const { owner, check } of checks) {
        if (!losers.get(owner)?.some(wanted)) continue;
        const wrong = check();
        if (wrong) noteAgain(owner, `${wrong.object} is missing`);
      }
      const extra = networks.flatMap((n) => networkDriver(n.driver).observe?.(host, n) ?? []);
      reconcile({
        declared: shortcuts,
        present: withoutRemovals(
          new Map<ObjectKind, Present[]>([
            ["link", links],
            ["shortcut", extra],
          ]),
        ),
        act: missingLine(noteAgain),
      });
      return again;
    },
  };
}

/** What the kernel holds, for a reading that changes nothing: no object offers its removal. */
function withoutRemovals(present: Map<ObjectKind, Present[]>): Map<ObjectKind, Present[]> {
  return new Map([...present].map(([kind, list]) => [kind, list.map(({ remove: _r, ...keep }) => keep)]));
}

/** The loop's act for a reading: every make or fix is a line of its owner's; removals are not drift. */
function missingLine(note: Note): Act {
  return (action, object, _reason, _run, owner) => {
    if (action !== "remove") note(owner, `${object} is missing`);
  };
}

/** What one context lacks (CNI CHECK). */
export function missingFor(host: Host, context: string): string[] {
  return missingByContext(host, [context]).get(context) ?? [];
}

function converge(
  host: Host,
  act: Act,
  dryRun: boolean,
  opts: { removals: boolean },
  next: (what: string) => void = () => {},
): void {
  timed(host, "reconcile", opts.removals ? "converge" : "repair", () =>
    convergeOnce(host, act, dryRun, opts, next),
  );
}

function convergeOnce(
  host: Host,
  act: Act,
  dryRun: boolean,
  opts: { removals: boolean },
  next: (what: string) => void,
): void {
  next("devices: remaking what records declare");
  remakeDevices(host, act);
  next("kernel: reading what is there");
  const observed = observe(host).present;
  const present = opts.removals
    ? observed
    : new Map([...observed].map(([kind, list]) => [kind, list.map(({ remove: _r, ...keep }) => keep)]));
  const own = declareAll(host, host.store.listNetworks(), host.store.listContexts());
  next("kernel and firewall: converging on the records");
  reconcile({
    // Links were made in the first pass: here they are only owned.
    declared: own.objects.map(({ make, ...d }) => (d.kind === "link" || !make ? d : { ...d, make })),
    present,
    act,
    after: { route: () => reconcileFirewall(host, own.firewall, act, dryRun) },
  });
}

/** The first pass: missing links that records can make (a network's device) are made, nothing is removed. */
function remakeDevices(host: Host, act: Act): void {
  const links = observeLinks(host).map(({ remove: _r, ...keep }) => keep);
  const own = declareAll(host, host.store.listNetworks(), host.store.listContexts());
  reconcile({
    declared: own.objects.filter((d) => d.kind === "link"),
    present: new Map([["link", links]]),
    act,
  });
}

function observe(host: Host): Observation {
  const networks = host.store.listNetworks();
  return observeAll(host, () => networks.flatMap((n) => networkDriver(n.driver).observe?.(host, n) ?? []));
}

/**
 * A store with no records that is asked to converge is most likely the wrong one (a mistyped --state-dir, a sudo that
 * lost NETCTX_STATE_DIR): while the kernel holds objects of another store, or of no known store, it changes nothing.
 */
function refuseForAnEmptyStore(host: Host, what: string): void {
  if (host.store.listNetworks().length > 0 || host.store.listContexts().length > 0) return;
  const { foreign, unmarked } = observe(host);
  const other = foreign[0];
  if (other)
    throw conflict(
      "state-dir",
      `${what}: the store at ${host.store.dir} is empty, and ${other.object} belongs to the store at ${other.store.dir ?? `with id ${other.store.id}`}: refusing to change anything (is --state-dir right?)`,
    );
  if (unmarked[0])
    throw conflict(
      "state-dir",
      `${what}: the store at ${host.store.dir} is empty, and ${unmarked[0]} carries netctx's marks but no store's: refusing to change anything (is --state-dir right? remove it by hand if it is a leftover)`,
    );
}
