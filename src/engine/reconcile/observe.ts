/**
 * What the kernel holds that carries our marks, per kind: links of group LINK_GROUP or with an nc- name, netns
 * netctx-*, cgroups under our parent, policy rules at the l3 priority, routes on our devices, global addresses on
 * our devices. Nothing without one of those marks is ever listed, so nothing else is ever removed.
 *
 * Each of them also says which store made it (model/store-mark.ts): a link by its alias, a netns by its loopback's
 * alias, a cgroup by an xattr; addresses and routes go with their link, and a context table with the addresses its
 * rules select. Another store's objects are set apart and never listed for the loop; objects made before stores
 * marked theirs carry no mark and count as this store's, as they always did.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { Host } from "../../host.ts";
import { cgroupXattr, contextsCgroupParentPath } from "../../kernel/cgroup.ts";
import { deleteNetns, listNetns, netnsPath } from "../../kernel/netns.ts";
import { RT_TABLE_MAIN } from "../../kernel/route.ts";
import { type Link, type Route, Rtnl, type Rule } from "../../kernel/rtnl.ts";
import { FIRST_L3_TABLE, L3_RULE_PRIORITY } from "../../levels/l3.ts";
import { releaseCgroup } from "../../levels/shared-stack.ts";
import { LINK_GROUP, NETNS_PREFIX, PREFIX } from "../../model/names.ts";
import { parseStoreMark, STORE_XATTR, type StoreMark } from "../../model/store-mark.ts";
import { tolerateMissing } from "../../networks/common.ts";
import {
  addressId,
  insideId,
  insideRouteId,
  mainRouteId,
  neighbourId,
  type ObjectKind,
  type Present,
  ruleId,
  tableRouteId,
} from "../../networks/ownership.ts";

/** An object another store made: left alone, and named when a refusal needs it. */
export interface ForeignObject {
  object: string;
  store: StoreMark;
}

export interface Observation {
  /** This store's objects and unmarked ones, per kind. */
  present: Map<ObjectKind, Present[]>;
  foreign: ForeignObject[];
  /** Objects with our marks but no store's: made before stores marked theirs, or by hand. */
  unmarked: string[];
}

/**
 * One reading of the kernel for a pass of the loop. `extra`: the objects only a driver sees (a bridge's shortcut
 * entries), which live inside objects already sorted by store.
 */
export function observeAll(host: Host, extra: () => Present[] = () => []): Observation {
  const mine = host.store.id;
  const foreign: ForeignObject[] = [];
  const unmarked: string[] = [];
  const sort = (object: string, mark: StoreMark | undefined): boolean => {
    if (mark === undefined) unmarked.push(object);
    else if (mark.id !== mine) foreign.push({ object, store: mark });
    return mark === undefined || mark.id === mine;
  };

  const links = host.rtnl
    .linkList()
    .filter((l) => l.group === LINK_GROUP || l.name.startsWith(PREFIX))
    .filter((l) => sort(`link ${l.name}`, parseStoreMark(l.alias)));
  const ours = new Set(links.map((l) => l.name));
  const theirs = (dev: string | undefined) => dev?.startsWith(PREFIX) && !ours.has(dev);

  const addrs = host.rtnl.addrList().filter((a) => a.scope === "global");
  // A context table is another store's when its rules select addresses on that store's devices, or its routes use them.
  const foreignAddresses = new Set(addrs.filter((a) => theirs(a.ifname)).map((a) => a.cidr.split("/")[0]!));
  const routes = host.rtnl.routeList();
  const rules = [...host.rtnl.ruleList(4), ...host.rtnl.ruleList(6)].filter(
    (r) => r.priority === L3_RULE_PRIORITY,
  );
  const foreignTables = new Set([
    ...rules
      .filter((r) => r.from !== undefined && foreignAddresses.has(r.from.split("/")[0]!))
      .map((r) => r.table),
    ...routes.filter((r) => r.table >= FIRST_L3_TABLE && theirs(r.dev)).map((r) => r.table),
  ]);

  const netns = ourNetns(mine, sort);
  const inside = (kind: ObjectKind) => netns.inside.filter((p) => p.kind === kind);
  const present = new Map<ObjectKind, Present[]>([
    ["link", [...links.map((l) => linkPresent(host, l)), ...inside("link")]],
    ["netns", netns.present],
    ["cgroup", ourCgroups(host, sort)],
    ["rule", rules.filter((r) => !foreignTables.has(r.table)).map((r) => rulePresent(host, r))],
    [
      "address",
      [
        ...addrs.filter((a) => ours.has(a.ifname)).map((a) => addressPresent(host, a.cidr, a.ifname)),
        ...inside("address"),
      ],
    ],
    [
      "route",
      [
        ...routes
          .filter((r) => !foreignTables.has(r.table) && !theirs(r.dev))
          .flatMap((r) => routePresent(host, r)),
        ...inside("route"),
      ],
    ],
    ["neighbour", inside("neighbour")],
    ["shortcut", extra()],
  ]);
  return { present, foreign, unmarked };
}

/** The links carrying our marks, whichever store made them (a network's device made again, for the first pass). */
export function observeLinks(host: Host): Present[] {
  return host.rtnl
    .linkList()
    .filter((l) => l.group === LINK_GROUP || l.name.startsWith(PREFIX))
    .map((l) => linkPresent(host, l));
}

function linkPresent(host: Host, l: Link): Present {
  return {
    kind: "link",
    id: l.name,
    unowned: "no network or context owns it",
    remove: () => tolerateMissing(() => host.rtnl.linkDel(l.name)),
  };
}

function addressPresent(host: Host, cidr: string, ifname: string): Present {
  return {
    kind: "address",
    id: addressId(cidr, ifname),
    object: `address ${cidr} dev ${ifname}`,
    on: ifname,
    unowned: "no network or lease owns it",
    remove: () => tolerateMissing(() => host.rtnl.addrDel(ifname, cidr)),
  };
}

function rulePresent(host: Host, rule: Rule): Present {
  return {
    kind: "rule",
    id: ruleId(rule),
    object: `rule ${describeRule(rule)}`,
    unowned: `no context owns table ${rule.table}`,
    remove: () => tolerateMissing(() => host.rtnl.ruleDel(rule)),
  };
}

/**
 * Routes of context tables are ours to remove; routes of the main table on our devices are there to be added to
 * (the kernel's prefix routes and anything an operator added stay).
 */
function routePresent(host: Host, r: Route): Present[] {
  if (!r.dev?.startsWith(PREFIX)) return [];
  if (r.table === RT_TABLE_MAIN) return [{ kind: "route", id: mainRouteId(r.dst, r.dev), on: r.dev }];
  if (r.table < FIRST_L3_TABLE) return [];
  return [
    {
      kind: "route",
      id: tableRouteId(r.table, r.family, r.dst),
      object: `route ${r.dst} dev ${r.dev} table ${r.table}`,
      on: r.dev,
      unowned: "no context owns the table",
      remove: () => tolerateMissing(() => host.rtnl.routeDel(r)),
    },
  ];
}

type Sort = (object: string, mark: StoreMark | undefined) => boolean;

/**
 * Our netns, and what each one this store marked holds inside: its links, addresses, routes of the main table and
 * permanent neighbours, read on one socket per netns (Rtnl.snapshot). Only this store's marked netns are looked
 * into: a runtime's netns (CNI) is never named netctx-* nor marked, and its insides are the runtime's. What is
 * inside is never removed (no `remove`): the context owns its netns, gc only puts back what was declared.
 */
function ourNetns(mine: string, sort: Sort): { present: Present[]; inside: Present[] } {
  const present: Present[] = [];
  const inside: Present[] = [];
  for (const name of listNetns().filter((n) => n.startsWith(NETNS_PREFIX))) {
    const seen = readNetns(netnsPath(name));
    if (!sort(`netns ${name}`, seen?.mark)) continue;
    present.push({ kind: "netns", id: name, unowned: "no context owns it", remove: () => deleteNetns(name) });
    if (seen?.mark?.id === mine) inside.push(...insidePresent(name, seen.snapshot));
  }
  return { present, inside };
}

type Snapshot = ReturnType<Rtnl["snapshot"]>;

/** A netns's mark is its loopback's alias (levels/l2.ts); one that vanished meanwhile has none. */
function readNetns(path: string): { mark: StoreMark | undefined; snapshot: Snapshot } | undefined {
  let rtnl: Rtnl;
  try {
    rtnl = Rtnl.open(path);
  } catch {
    return undefined;
  }
  try {
    // Read whole at once (the loopback's alias among the links): the caller keeps nothing of another store's.
    const snapshot = rtnl.snapshot();
    return { mark: parseStoreMark(snapshot.links.find((l) => l.name === "lo")?.alias), snapshot };
  } catch {
    return undefined;
  } finally {
    rtnl.close();
  }
}

function insidePresent(ns: string, s: Snapshot): Present[] {
  const on = (ifname: string) => insideId(ns, ifname);
  return [
    ...s.links
      .filter((l) => l.name !== "lo")
      .map((l): Present => ({ kind: "link", id: insideId(ns, l.name) })),
    ...s.addrs.map(
      (a): Present => ({ kind: "address", id: insideId(ns, addressId(a.cidr, a.ifname)), on: on(a.ifname) }),
    ),
    ...s.routes
      .filter((r) => r.dst === "default" || r.dev !== undefined)
      .map(
        (r): Present => ({
          kind: "route",
          id: insideId(ns, insideRouteId(r.family, r.dst, r.dev)),
          ...(r.dev ? { on: on(r.dev) } : {}),
        }),
      ),
    ...s.neighs
      .filter((n) => n.state.split(",").includes("permanent") && n.mac !== undefined)
      .map(
        (n): Present => ({
          kind: "neighbour",
          id: insideId(ns, neighbourId(n.ip, n.mac!, n.ifname)),
          on: on(n.ifname),
        }),
      ),
  ];
}

function ourCgroups(host: Host, sort: Sort): Present[] {
  let parent: string;
  try {
    parent = contextsCgroupParentPath(host.config.cgroupParent);
  } catch {
    return []; // no cgroup v2: no cgroups of ours either
  }
  if (!existsSync(parent)) return [];
  let names: string[];
  try {
    names = readdirSync(parent, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
  return names
    .map((name) => join(parent, name))
    .filter((path) => {
      const id = cgroupXattr(path, STORE_XATTR);
      return sort(`cgroup ${path}`, id === undefined ? undefined : { id });
    })
    .map((path) => ({
      kind: "cgroup" as const,
      id: path,
      // Refused while a process runs anywhere below it (a child cgroup too): its programs stay until then.
      unowned: "no context owns it",
      remove: () => releaseCgroup(path),
    }));
}

function describeRule(r: Rule): string {
  const parts = [`-${r.family} pref ${r.priority}`];
  if (r.from) parts.push(`from ${r.from}`);
  if (r.fwmark !== undefined) parts.push(`fwmark ${r.fwmark}`);
  parts.push(`table ${r.table}`);
  return parts.join(" ");
}
