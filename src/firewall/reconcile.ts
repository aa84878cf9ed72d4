/**
 * The firewall's one entry for gc and `netctx repair`: what every part should hold, as the engine computes it from
 * the records (plain data: networks, interfaces, guarded ports, publications), against our tables as listed now.
 * Each table is checked part by part; one with an object missing or damaged is rebuilt whole with every part in it
 * (the records' elements, and those of records still being made or removed carried over from the listing); the
 * others get their element diff. All of it is one transaction, so no part is ever left wiped for a later step.
 *
 * What it reports keeps the words gc always used: `nft table inet netctx` (the store's own name, naming.ts), `nft element nets4 10.1.0.0/24`,
 * `antispoof port nc-web`, `published ports of web`.
 */
import { attachLoopbackPublish } from "../kernel/bpf/publish-loopback.ts";
import {
  ANTISPOOF,
  type GuardedPort,
  listedByPort,
  listedPorts,
  type PortKind,
  portElements,
  tablesFor,
} from "./antispoof-objects.ts";
import { desiredElements, type FirewallNetwork, type Model, natModel, partElements } from "./nat-elements.ts";
import { natListing } from "./nat-listing.ts";
import { natDiff } from "./nat-script.ts";
import type { Nft } from "./nft.ts";
import { listedDirect } from "./overlay-direct-objects.ts";
import { includedParts, inetOnlyNat, type Job, rebuildLines, tableHealthy } from "./parts.ts";
import {
  checkComment,
  elementsOf,
  elementText,
  mapLines,
  PUBLISH,
  type PublishElement,
  desired as publishElements,
  same,
  taken,
  type WantedPublish,
} from "./publish-objects.ts";
import {
  elementLines,
  FAMILIES,
  type PartElement,
  readTable,
  type TableFamily,
  type TableListing,
  type TablePart,
  type TableRef,
} from "./tables.ts";

/** A port anti-spoofing should guard: owned always, added when missing only when `port` says how. */
export interface DesiredGuard {
  ifname: string;
  kind: PortKind;
  /**
   * The port as its settled record has it (MAC and addresses; an old record's MAC read from its netns). Absent
   * while the record is being made or removed: its elements are kept, never added.
   */
  port?: () => GuardedPort;
}

/** A context's published ports: every context owns its elements; `want` (settled ones) is what they should be. */
export interface DesiredPublication {
  context: string;
  want?: WantedPublish;
}

export interface FirewallDesired {
  networks: readonly FirewallNetwork[];
  /** ifname -> network */
  interfaces: ReadonlyMap<string, string>;
  /** Kinds of port some network guards: their tables exist even before a port does. */
  guardedKinds?: readonly PortKind[];
  guards: readonly DesiredGuard[];
  publications: readonly DesiredPublication[];
}

export interface FirewallAction {
  action: "rebuild" | "remove" | "add";
  object: string;
  reason: string;
  /** This one could not be done (the rest was). */
  error?: Error;
}

type PerFamily<T> = Record<TableFamily, T>;

function perFamily<T>(make: (f: TableFamily) => T): PerFamily<T> {
  return { inet: make("inet"), bridge: make("bridge"), arp: make("arp") };
}

export function reconcileTables(
  nft: Nft,
  table: TableRef,
  desired: FirewallDesired,
  opts: { dryRun?: boolean; publishCgroup?: string | undefined },
): FirewallAction[] {
  const dryRun = opts.dryRun ?? false;
  const model = natModel(desired.networks, desired.interfaces);
  const listings = perFamily((f) => readTable(f, table, nft.list(["table", f, table.name])));

  const kinds = new Set<PortKind>([
    ...(desired.guardedKinds ?? []),
    ...desired.guards.filter((g) => g.port).map((g) => g.kind),
  ]);
  const wanted = desired.publications.flatMap((p) => (p.want ? [{ context: p.context, want: p.want }] : []));
  const needed: PerFamily<Job[]> = {
    inet: [
      ...(model.networks.size > 0 || listings.inet.exists ? (["nat"] as const) : []),
      ...(kinds.has("routed") ? (["antispoof"] as const) : []),
      ...(wanted.length > 0 ? (["publish"] as const) : []),
    ],
    bridge: kinds.has("bridge") ? ["antispoof"] : [],
    arp: kinds.has("routed") ? ["antispoof"] : [],
  };
  // No network, routed port or publication: the inet table has nothing to hold, and its base chains would hook
  // every packet of the host for nothing (parts.ts inetOnlyNat).
  const dropInet =
    model.networks.size === 0 && !kinds.has("routed") && wanted.length === 0 && inetOnlyNat(listings.inet);
  if (dropInet) needed.inet = [];
  const parts = perFamily((f) => (f === "inet" && dropInet ? [] : includedParts(listings[f], needed[f])));
  const rebuild = perFamily((f) => parts[f].length > 0 && !tableHealthy(listings[f], parts[f]));

  const actions: FirewallAction[] = [];
  for (const f of FAMILIES)
    if (rebuild[f])
      actions.push({
        action: "rebuild",
        object: `nft table ${f} ${table.name}`,
        reason: "missing or damaged",
      });

  if (dropInet)
    actions.push({ action: "remove", object: `nft table inet ${table.name}`, reason: "no network needs it" });
  const nat = dropInet
    ? { lines: [`delete table inet ${table.name}`], fresh: [] }
    : reconcileNat(table.name, model, listings.inet, rebuild.inet, actions);
  const guards = reconcileGuards(desired.guards, listings, rebuild, dryRun, actions);
  const pubs = reconcilePublications(desired.publications, wanted, listings.inet, rebuild.inet, actions);

  const script: string[] = [];
  for (const f of FAMILIES) {
    if (rebuild[f]) {
      const elements: Partial<Record<Job, PartElement[]>> = { antispoof: guards.fresh(f) };
      if (f === "inet") Object.assign(elements, { nat: nat.fresh, publish: pubs.fresh() });
      script.push(...rebuildLines(listings[f], parts[f], elements));
    } else {
      if (f === "inet") script.push(...nat.lines);
      script.push(...guards.lines[f]);
      if (f === "inet") script.push(...pubs.lines);
    }
  }
  if (dryRun) return actions;
  nft.apply(script.join("\n"));
  for (const { action, want } of pubs.loopback) {
    try {
      attachLoopbackPublish(opts.publishCgroup, want.published, want.target);
    } catch (err) {
      action.error = asError(err);
    }
  }
  return actions;
}

/** NAT and internal networks: the registry and the sets the rules read, exactly as the model says. */
function reconcileNat(
  table: string,
  model: Model,
  inet: TableListing,
  rebuilt: boolean,
  actions: FirewallAction[],
): { lines: string[]; fresh: PartElement[] } {
  const want = desiredElements(model);
  const diff = natDiff(table, rebuilt ? new Map() : natListing(inet).elements, want);
  for (const e of diff.remove)
    actions.push({ action: "remove", object: `nft element ${e}`, reason: "no network or interface owns it" });
  for (const e of diff.add)
    actions.push({ action: "add", object: `nft element ${e}`, reason: "a network or interface needs it" });
  // The direct-routing elements are the overlay data path's, which the model cannot derive: a rebuild keeps them.
  return { lines: diff.lines, fresh: rebuilt ? [...partElements(want), ...listedDirect(inet)] : [] };
}

/**
 * Anti-spoofing: ports guarded that no record owns go; settled ports missing from a table of their kind (a
 * rebuilt table lacks them all) get their elements anew, leftovers of the same name out first.
 */
function reconcileGuards(
  guards: readonly DesiredGuard[],
  listings: PerFamily<TableListing>,
  rebuild: PerFamily<boolean>,
  dryRun: boolean,
  actions: FirewallAction[],
): { lines: PerFamily<string[]>; fresh: (f: TableFamily) => PartElement[] } {
  const owned = new Set(guards.map((g) => g.ifname));
  const listed = perFamily((f) => listedPorts(listings[f]));
  // Each table's elements read once, by port: a gc after a crash may have many ports to take out.
  const byPort = perFamily((f) => listedByPort(listings[f], ANTISPOOF[f]));
  const del = perFamily<PartElement[]>(() => []);
  const add = perFamily<PartElement[]>(() => []);
  const strays = [...new Set([...listed.bridge, ...listed.inet, ...listed.arp])].filter((p) => !owned.has(p));
  for (const port of strays) {
    actions.push({ action: "remove", object: `antispoof port ${port}`, reason: "no context owns it" });
    for (const f of FAMILIES) if (!rebuild[f]) del[f].push(...(byPort[f].get(port) ?? []));
  }
  const anew = new Set<string>();
  const seen = new Set<string>();
  for (const g of guards) {
    if (!g.port || seen.has(g.ifname)) continue;
    seen.add(g.ifname);
    const there = tablesFor(g.kind).every((t) => !rebuild[t.family] && listed[t.family].has(g.ifname));
    if (there) continue;
    const action: FirewallAction = {
      action: "add",
      object: `antispoof port ${g.ifname}`,
      reason: "its context is ready",
    };
    actions.push(action);
    if (dryRun) continue;
    let elements: { t: TablePart; elems: PartElement[] }[];
    try {
      const port = g.port();
      elements = tablesFor(g.kind).map((t) => ({ t, elems: portElements(t, port) }));
    } catch (err) {
      action.error = asError(err);
      continue;
    }
    anew.add(g.ifname);
    for (const { t, elems } of elements) {
      // Leftovers of the same name (another MAC, old addresses) go out first.
      if (!rebuild[t.family]) del[t.family].push(...(byPort[t.family].get(g.ifname) ?? []));
      add[t.family].push(...elems);
    }
  }
  return {
    lines: perFamily((f) => {
      const t = listings[f].table.name;
      return [...elementLines(f, t, "delete", del[f]), ...elementLines(f, t, "add", add[f])];
    }),
    // Ports of records still being made or removed keep what they had.
    fresh: (f) => [
      ...ANTISPOOF[f].listed(listings[f]).filter((e) => owned.has(e.owner!) && !anew.has(e.owner!)),
      ...add[f],
    ],
  };
}

/**
 * Publishing: elements of contexts no record names go; a settled context missing any of its elements gets exactly
 * its own (a host port another context holds is its error, the others go on).
 */
function reconcilePublications(
  publications: readonly DesiredPublication[],
  wanted: readonly { context: string; want: WantedPublish }[],
  inet: TableListing,
  rebuilt: boolean,
  actions: FirewallAction[],
): {
  lines: string[];
  fresh: () => PartElement[];
  loopback: { action: FirewallAction; want: WantedPublish }[];
} {
  const owned = new Set(publications.map((p) => p.context));
  const old = elementsOf(inet);
  const byContext = new Map<string, PublishElement[]>();
  for (const h of rebuilt ? [] : old) {
    const mine = byContext.get(h.context);
    if (mine) mine.push(h);
    else byContext.set(h.context, [h]);
  }
  const del: PublishElement[] = [];
  const put: PublishElement[] = [];
  for (const context of [...new Set(old.map((h) => h.context))].filter((c) => !owned.has(c))) {
    actions.push({
      action: "remove",
      object: `published ports of ${context}`,
      reason: "no context owns them",
    });
    del.push(...(byContext.get(context) ?? []));
  }
  // What stays taken: elements of the contexts that own theirs, and those this run gives out.
  const taking = old.filter((h) => owned.has(h.context));
  const anew = new Set<string>();
  const loopback: { action: FirewallAction; want: WantedPublish }[] = [];
  for (const { context, want } of wanted) {
    const action: FirewallAction = {
      action: "add",
      object: `published ports of ${context}`,
      reason: "its context is ready",
    };
    let elems: PublishElement[];
    try {
      checkComment(context);
      elems = publishElements(context, want.published, want.target);
    } catch (err) {
      actions.push({ ...action, error: asError(err) });
      continue;
    }
    const mine = byContext.get(context) ?? [];
    if (elems.every((d) => mine.some((h) => same(h, d)))) continue;
    actions.push(action);
    const clash = elems.map((d) => taken(d, taking)).find((e) => e !== undefined);
    if (clash) {
      action.error = clash;
      continue;
    }
    anew.add(context);
    taking.push(...elems);
    del.push(...mine.filter((h) => !elems.some((d) => same(d, h))));
    put.push(...elems.filter((d) => !mine.some((h) => same(h, d))));
    loopback.push({ action, want });
  }
  return {
    lines: rebuilt ? [] : mapLines(inet.table.name, del, put),
    // Contexts still being made or removed keep what they had.
    fresh: () => [
      ...PUBLISH.listed(inet).filter((e) => owned.has(e.owner!) && !anew.has(e.owner!)),
      ...put.map((e) => ({ set: e.map, text: elementText(e), owner: e.context })),
    ],
    loopback,
  };
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
