/**
 * gc: compare state with the kernel and converge. Records half-done by a process that is gone are finished or
 * rolled back; ready records whose kernel anchor is gone are dropped; kernel objects that carry netctx's marks
 * (interface group LINK_GROUP or an nc- name, netns netctx-*, cgroups under our parent, nctx_* BPF programs,
 * our nft table, priority-1000 rules, routes on our devices in tables >= 1000) and that no record owns are
 * removed. Nothing without one of those marks is ever touched.
 *
 * The kernel is listed before the store is read: a record always exists before its kernel objects (and outlives
 * them on removal), so an object a concurrent create makes after our listing is never mistaken for an orphan.
 */

import { existsSync, readdirSync } from "node:fs";
import { basename, join } from "node:path";
import { errorLine } from "../errors.ts";
import { antispoofEnabled, guardAttachment, guardedElements, unguardPort } from "../firewall/antispoof.ts";
import type { FirewallNetwork } from "../firewall/firewall.ts";
import type { Host } from "../host.ts";
import { attachSocketPolicy, policyDrift, type SocketPolicy } from "../kernel/bpf/socket-policy.ts";
import { contextsCgroupParentPath } from "../kernel/cgroup.ts";
import { deleteNetns, listNetns } from "../kernel/netns.ts";
import { RT_TABLE_MAIN } from "../kernel/route.ts";
import { type Addr, type AddrOpts, type Link, type Route, Rtnl, type Rule } from "../kernel/rtnl.ts";
import { type ContextSpec, specOf } from "../levels/driver.ts";
import { FIRST_L3_TABLE, L3_RULE_PRIORITY } from "../levels/l3.ts";
import { l3Policy } from "../levels/l3-devices.ts";
import { levelDriver } from "../levels/registry.ts";
import { addressPolicy, releaseCgroup } from "../levels/shared-stack.ts";
import { bridgeIfname, LINK_GROUP, NETNS_PREFIX, PREFIX } from "../model/names.ts";
import { formatIp, parseCidr } from "../net/cidr.ts";
import { ifbName } from "../networks/bandwidth.ts";
import { segmentPrefix } from "../networks/bridge-segments.ts";
import { dropShortcutMac, shortcutMacs } from "../networks/bridge-shortcut.ts";
import { familyOf, firewallNetwork, tolerateMissing } from "../networks/common.ts";
import type { Attachment } from "../networks/driver.ts";
import { networkDriver } from "../networks/registry.ts";
import { contextRoutes } from "../networks/routed.ts";
import type { ContextRecord, NetworkRecord } from "../state/store.ts";
import { shapedAttachment } from "./context-extras.ts";
import { asOpMark, ownerAlive } from "./intent.ts";
import { type Act, settlePublications } from "./settle-publish.ts";

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

/** Drivers whose device nc-NET is a bridge their traffic crosses, registered in the firewall by that name. */
const BRIDGED = new Set(["bridge", "host"]);
/** Drivers whose contexts' host-side veths are registered in the firewall one by one. */
const PER_VETH = new Set(["routed"]);

export function gc(host: Host, opts: { dryRun?: boolean } = {}): GcReport {
  const report: GcReport = { dryRun: opts.dryRun ?? false, actions: [], busy: [] };
  const act: Act = (action, object, reason, run) => {
    const a: GcAction = { action, object, reason };
    report.actions.push(a);
    if (report.dryRun) return;
    try {
      run();
    } catch (err) {
      a.error = errorLine(err);
    }
  };
  settleContexts(host, act, report);
  settleNetworks(host, act, report);
  sweepKernel(host, act, report.dryRun);
  return report;
}

/**
 * Reinstall our nft tables and their elements from state (after `nft flush ruleset`): the NAT/isolation table and
 * the anti-spoofing guards of every ready l2 context, and every ready context's published ports. Other tables are
 * untouched.
 */
export function repair(host: Host): { rebuild: boolean; remove: string[]; add: string[] } {
  const networks = host.store.listNetworks();
  const contexts = host.store.listContexts();
  const want = desiredFirewall(networks, contexts);
  let diff = { rebuild: false, remove: [] as string[], add: [] as string[] };
  host.firewall((fw) => {
    diff = fw.reconcile(want.networks, want.ifaces);
  });
  for (const g of guardPlan(networks, contexts).missing) {
    guard(host, g);
    diff.add.push(`antispoof port ${g.att.hostIfname}`);
  }
  settlePublications(host, contexts, (action, object, _reason, run) => {
    run();
    (action === "remove" ? diff.remove : diff.add).push(object);
  });
  return diff;
}

interface Guard {
  net: NetworkRecord;
  netns: string;
  att: Attachment;
}

/** Ports our anti-spoofing tables guard that no record owns, and guards that ready contexts miss. */
function guardPlan(
  networks: NetworkRecord[],
  contexts: ContextRecord[],
): { stray: string[]; missing: Guard[] } {
  const tables = guardedElements();
  const inTable = (family: string) => new Set(tables[family]?.["as_ports"] ?? []);
  const bridged = inTable("bridge");
  const routed = [inTable("inet"), inTable("arp")];
  const nets = new Map(networks.map((n) => [n.name, n]));
  const owned = new Set<string>();
  const missing: Guard[] = [];
  for (const c of contexts) {
    const spec = specOf(c);
    if (c.level !== "l2" || !spec.netns) continue;
    for (const att of spec.attachments) {
      const net = nets.get(att.network);
      if (!net || !att.hostIfname || !antispoofEnabled(net)) continue;
      owned.add(att.hostIfname);
      const there =
        net.driver === "routed" ? routed.every((t) => t.has(att.hostIfname)) : bridged.has(att.hostIfname);
      if (!there && c.status === "ready" && existsSync(spec.netns))
        missing.push({ net, netns: spec.netns, att });
    }
  }
  const stray = [...new Set([...bridged, ...routed.flatMap((t) => [...t])])].filter((p) => !owned.has(p));
  return { stray, missing };
}

function guard(host: Host, g: Guard): void {
  const rtnl = Rtnl.open(g.netns);
  try {
    guardAttachment(host, g.net, rtnl, g.att);
  } finally {
    rtnl.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// records

function settleContexts(host: Host, act: Act, report: GcReport): void {
  const contexts = host.store.listContexts();
  for (const c of contexts) {
    if (c.status !== "ready") {
      const mark = asOpMark(c.spec["op"]);
      if (ownerAlive(mark)) {
        report.busy.push(`context ${c.name}`);
        continue;
      }
      const who = mark ? `process ${mark.pid}` : "a process";
      if (c.status === "creating")
        act("rollback", `context ${c.name}`, `create by ${who} did not finish`, () => dropContext(host, c));
      else act("finish-rm", `context ${c.name}`, `rm by ${who} did not finish`, () => dropContext(host, c));
      continue;
    }
    const gone = missingAnchor(c);
    if (gone) act("drop", `context ${c.name}`, gone, () => dropContext(host, c));
  }
  const owners = new Set(contexts.map((c) => c.name));
  const orphans = new Set(
    host.store
      .leases()
      .filter((l) => !owners.has(l.owner))
      .map((l) => l.owner),
  );
  for (const owner of orphans)
    act("release", `leases of ${owner}`, "no context of that name", () => host.store.releaseAll(owner));
}

/** Why a ready context cannot be working any more, or undefined when its anchor is there. */
function missingAnchor(c: ContextRecord): string | undefined {
  const spec = specOf(c);
  if (c.level === "l2")
    return spec.netns && !existsSync(spec.netns) ? `its netns ${spec.netns} is gone` : undefined;
  return spec.cgroup && !existsSync(spec.cgroup) ? `its cgroup ${spec.cgroup} is gone` : undefined;
}

/** Teardown tolerates missing objects; the record and its leases go only once the kernel side is gone. */
function dropContext(host: Host, c: ContextRecord): void {
  levelDriver(c.level).teardown(host, c.name, specOf(c));
  host.store.transaction(() => {
    host.store.releaseAll(c.name);
    host.store.deleteContext(c.name);
  });
}

function settleNetworks(host: Host, act: Act, report: GcReport): void {
  const contexts = host.store.listContexts();
  for (const n of host.store.listNetworks()) {
    const mark = asOpMark(n.options["op"]);
    const clean = withoutMark(n);
    const users = contexts.filter((c) => specOf(c).attachments.some((a) => a.network === n.name));
    if (mark) {
      if (ownerAlive(mark)) {
        report.busy.push(`network ${n.name}`);
        continue;
      }
      if (mark.op === "remove" && users.length === 0) {
        act("finish-rm", `network ${n.name}`, `network rm by process ${mark.pid} did not finish`, () => {
          networkDriver(n.driver).destroy(host, clean);
          host.store.deleteNetwork(n.name);
        });
        continue;
      }
      const verb = mark.op === "remove" ? "keep" : "finish-create";
      act(verb, `network ${n.name}`, `network ${mark.op} by process ${mark.pid} did not finish`, () => {
        ensureAnchor(host, clean, users);
        host.store.updateNetwork(clean);
      });
      continue;
    }
    if (!host.rtnl.linkGet(bridgeIfname(n.name)))
      act("recreate", `network ${n.name}`, `its device ${bridgeIfname(n.name)} is missing`, () =>
        ensureAnchor(host, n, users),
      );
  }
}

function withoutMark(n: NetworkRecord): NetworkRecord {
  const { op: _op, ...options } = n.options;
  return { ...n, options };
}

/**
 * A missing nc-NET is made again and a bridge network's l2 contexts' veths go back on it; addresses, routes and nft
 * follow in the sweep.
 */
function ensureAnchor(host: Host, n: NetworkRecord, users: ContextRecord[]): void {
  const bridge = bridgeIfname(n.name);
  if (host.rtnl.linkGet(bridge)) return;
  networkDriver(n.driver).create(host, n);
  if (n.driver !== "bridge") return;
  for (const c of users) {
    if (c.level !== "l2") continue;
    for (const att of specOf(c).attachments)
      if (att.network === n.name && att.hostIfname && host.rtnl.linkGet(att.hostIfname))
        host.rtnl.linkSet(att.hostIfname, { master: bridge });
  }
}

// ---------------------------------------------------------------------------------------------------------
// kernel objects

interface KernelView {
  links: Link[];
  netns: string[];
  cgroupParent: string | undefined;
  cgroups: string[];
  rules: Rule[];
  routes: Route[];
  addrs: Addr[];
}

function readKernel(host: Host): KernelView {
  const cgroupParent = cgroupParentIfAny();
  return {
    links: host.rtnl.linkList(),
    netns: listNetns().filter((n) => n.startsWith(NETNS_PREFIX)),
    cgroupParent,
    cgroups: cgroupParent ? subdirs(cgroupParent) : [],
    rules: [...host.rtnl.ruleList(4), ...host.rtnl.ruleList(6)],
    routes: host.rtnl.routeList(),
    addrs: host.rtnl.addrList(),
  };
}

function cgroupParentIfAny(): string | undefined {
  try {
    const parent = contextsCgroupParentPath();
    return existsSync(parent) ? parent : undefined;
  } catch {
    return undefined; // no cgroup v2: no cgroups of ours either
  }
}

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

function sweepKernel(host: Host, act: Act, dryRun: boolean): void {
  const k = readKernel(host);
  const networks = host.store.listNetworks();
  const contexts = host.store.listContexts();
  const l2 = contexts.filter((c) => c.level === "l2");
  const shared = contexts.filter((c) => c.level !== "l2");
  const ready = (c: ContextRecord) => c.status === "ready";

  // links
  const ownedLinks = new Set<string>();
  for (const n of networks) ownedLinks.add(bridgeIfname(n.name));
  for (const c of l2) for (const a of specOf(c).attachments) if (a.hostIfname) ownedLinks.add(a.hostIfname);
  // A limited context's ifb (networks/bandwidth.ts) carries our group too.
  for (const c of l2) {
    const shaped = shapedAttachment(specOf(c));
    if (shaped && specOf(c).bandwidth?.egressRate !== undefined) ownedLinks.add(ifbName(shaped.hostIfname));
  }
  // A bridge network's segments and trunks (networks/bridge-segments.ts) go with the network.
  const segments = networks.filter((n) => BRIDGED.has(n.driver)).map((n) => segmentPrefix(n.name));
  const removedLinks = new Set<string>();
  for (const link of k.links) {
    const ours = link.group === LINK_GROUP || link.name.startsWith(PREFIX);
    if (!ours || ownedLinks.has(link.name) || segments.some((p) => link.name.startsWith(p))) continue;
    removedLinks.add(link.name);
    act("remove", `link ${link.name}`, "no network or context owns it", () =>
      tolerateMissing(() => host.rtnl.linkDel(link.name)),
    );
  }

  // network namespaces
  const ownedNetns = new Set(l2.flatMap((c) => (specOf(c).netns ? [basename(specOf(c).netns!)] : [])));
  for (const name of k.netns)
    if (!ownedNetns.has(name)) act("remove", `netns ${name}`, "no context owns it", () => deleteNetns(name));

  // cgroups and their BPF programs
  if (k.cgroupParent) {
    const parent = k.cgroupParent;
    const ownedCgroups = new Map(
      shared.flatMap((c) => (specOf(c).cgroup ? [[specOf(c).cgroup!, c] as const] : [])),
    );
    for (const name of k.cgroups) {
      const path = join(parent, name);
      const owner = ownedCgroups.get(path);
      if (!owner) {
        // Refused while a process runs anywhere below it (a child cgroup too): its programs stay until then.
        act("remove", `cgroup ${path}`, "no context owns it", () => releaseCgroup(path));
        continue;
      }
      if (!ready(owner)) continue;
      const want = policyOf(owner, k);
      let drift: string | undefined;
      try {
        drift = policyDrift(path, want);
      } catch (err) {
        drift = `its programs cannot be compared (${errorLine(err)})`;
      }
      if (drift) act("reattach", `bpf ${path}`, drift, () => attachSocketPolicy(path, want));
    }
  }

  // policy rules and routes of l3 tables
  const ownedTables = new Set(
    contexts.flatMap((c) => (specOf(c).table !== undefined ? [specOf(c).table!] : [])),
  );
  for (const rule of k.rules)
    if (rule.priority === L3_RULE_PRIORITY && !ownedTables.has(rule.table))
      act("remove", `rule ${describeRule(rule)}`, `no l3 context owns table ${rule.table}`, () =>
        tolerateMissing(() => host.rtnl.ruleDel(rule)),
      );
  for (const route of k.routes) {
    if (route.table < FIRST_L3_TABLE || ownedTables.has(route.table)) continue;
    if (!route.dev?.startsWith(PREFIX) || removedLinks.has(route.dev)) continue;
    act(
      "remove",
      `route ${route.dst} dev ${route.dev} table ${route.table}`,
      "no l3 context owns the table",
      () => tolerateMissing(() => host.rtnl.routeDel(route)),
    );
  }

  // addresses on our devices
  const expected = expectedAddresses(networks, contexts);
  const present = new Map<string, Set<string>>();
  for (const a of k.addrs) {
    if (a.scope !== "global") continue;
    const set = present.get(a.ifname) ?? new Set<string>();
    set.add(normal(a.cidr));
    present.set(a.ifname, set);
  }
  for (const a of k.addrs) {
    if (a.scope !== "global" || !ownedLinks.has(a.ifname)) continue;
    if (expected.get(a.ifname)?.owned.has(normal(a.cidr))) continue;
    act("remove", `address ${a.cidr} dev ${a.ifname}`, "no network or lease owns it", () =>
      tolerateMissing(() => host.rtnl.addrDel(a.ifname, a.cidr)),
    );
  }
  const linkNames = new Set(k.links.map((l) => l.name));
  for (const [ifname, want] of expected) {
    if (!linkNames.has(ifname)) continue;
    for (const [cidr, opts] of want.required)
      if (!present.get(ifname)?.has(cidr))
        act("add", `address ${cidr} dev ${ifname}`, "its network or lease needs it", () =>
          host.rtnl.addrAdd(ifname, cidr, opts),
        );
  }

  // host routes to routed contexts, after the addresses: each names its gateway address as source
  const mainRoutes = new Set(
    // The kernel's dump prints addresses the canonical way, as normal() does.
    k.routes.filter((r) => r.table === RT_TABLE_MAIN).map((r) => `${r.dst} ${r.dev}`),
  );
  const nets = new Map(networks.map((n) => [n.name, n]));
  for (const c of l2.filter(ready))
    for (const att of specOf(c).attachments) {
      if (nets.get(att.network)?.driver !== "routed" || removedLinks.has(att.hostIfname)) continue;
      if (!linkNames.has(att.hostIfname)) continue;
      for (const route of contextRoutes(att))
        if (!mainRoutes.has(`${normal(route.dst)} ${route.dev}`))
          act("add", `route ${route.dst} dev ${route.dev}`, `context ${c.name} is reached by it`, () =>
            host.rtnl.routeAdd(route),
          );
    }

  // nft elements
  const want = desiredFirewall(networks, contexts);
  host.firewall((fw) => {
    const diff = fw.reconcile(want.networks, want.ifaces, dryRun);
    const mark = (action: string, what: string, reason: string) =>
      act(action, what, reason, () => {
        // applied by reconcile above, as one nft transaction
      });
    if (diff.rebuild) mark("rebuild", "nft table inet netctx", "missing or damaged");
    for (const e of diff.remove) mark("remove", `nft element ${e}`, "no network or interface owns it");
    for (const e of diff.add) mark("add", `nft element ${e}`, "a network or interface needs it");
  });
  // Anti-spoofing guards live in their own sets (firewall/antispoof.ts); a rebuild above drops the inet part.
  const guards = guardPlan(networks, contexts);
  for (const port of guards.stray)
    act("remove", `antispoof port ${port}`, "no context owns it", () => unguardPort(host, port));
  for (const g of guards.missing)
    act("add", `antispoof port ${g.att.hostIfname}`, "its context is ready", () => guard(host, g));
  // Published ports live in maps of the inet table: a rebuild above emptied them.
  settlePublications(host, contexts, act);
  sweepShortcuts(host, networks, l2, act);
}

/**
 * A bridge network's shortcut map holds one entry per unshaped context on it (networks/bridge-shortcut.ts); rm
 * takes its entry out first, so a stray one means a context that went some other way. Its MAC is nobody's now,
 * and its ifindex may come back as another device's.
 */
function sweepShortcuts(host: Host, networks: NetworkRecord[], l2: ContextRecord[], act: Act): void {
  for (const n of networks) {
    if (n.driver !== "bridge") continue;
    // The attachment that carries bandwidth limits takes the bridge.
    const owned = new Set(
      l2.flatMap((c) => {
        const shaped = shapedAttachment(specOf(c))?.hostIfname;
        return specOf(c).attachments.flatMap((a) =>
          a.network === n.name && a.mac && (shaped === undefined || a.hostIfname !== shaped)
            ? [a.mac.toLowerCase()]
            : [],
        );
      }),
    );
    for (const mac of shortcutMacs(host, n.name) ?? [])
      if (!owned.has(mac))
        act(
          "remove",
          `shortcut entry ${mac} of network ${n.name}`,
          "no unshaped context on it has that MAC",
          () => dropShortcutMac(host, n.name, mac),
        );
  }
}

/** The socket policy a context's cgroup should hold; an l3 context's devices as the kernel has them now. */
function policyOf(c: ContextRecord, k: KernelView): SocketPolicy {
  const spec: ContextSpec = specOf(c);
  if (c.level === "l3") {
    const indexes = new Map(k.links.map((l) => [l.name, l.index]));
    return l3Policy(spec, (name) => indexes.get(name), k.routes);
  }
  return addressPolicy(spec);
}

function describeRule(r: Rule): string {
  const parts = [`-${r.family} pref ${r.priority}`];
  if (r.from) parts.push(`from ${r.from}`);
  if (r.fwmark !== undefined) parts.push(`fwmark ${r.fwmark}`);
  parts.push(`table ${r.table}`);
  return parts.join(" ");
}

function normal(cidr: string): string {
  const c = parseCidr(cidr, "address");
  return `${formatIp(c.family, c.addr)}/${c.prefix}`;
}

interface DeviceAddresses {
  /** Every address some record accounts for: never removed. */
  owned: Set<string>;
  /** Addresses of settled records: added back when missing. */
  required: Map<string, AddrOpts>;
}

function expectedAddresses(
  networks: NetworkRecord[],
  contexts: ContextRecord[],
): Map<string, DeviceAddresses> {
  const out = new Map<string, DeviceAddresses>();
  const put = (ifname: string, cidr: string, required: boolean, opts: AddrOpts) => {
    const d = out.get(ifname) ?? { owned: new Set<string>(), required: new Map<string, AddrOpts>() };
    const key = normal(cidr);
    d.owned.add(key);
    if (required) d.required.set(key, opts);
    out.set(ifname, d);
  };
  const byName = new Map(networks.map((n) => [n.name, n]));
  for (const n of networks) {
    const settled = n.options["op"] === undefined;
    for (const { cidr, opts } of networkDriver(n.driver).deviceAddresses(n))
      put(bridgeIfname(n.name), cidr, settled, opts);
  }
  for (const c of contexts) {
    const settled = c.status === "ready";
    for (const att of specOf(c).attachments) {
      const net = byName.get(att.network);
      if (!net) continue;
      if (c.level !== "l2")
        for (const cidr of att.addresses)
          put(att.ifname, cidr, settled, { nodad: familyOf(cidr) === 6, noprefixroute: true });
    }
  }
  return out;
}

function desiredFirewall(
  networks: NetworkRecord[],
  contexts: ContextRecord[],
): { networks: FirewallNetwork[]; ifaces: Map<string, string> } {
  // A network whose rm is under way keeps no elements: its remover is deleting them.
  const live = networks.filter((n) => asOpMark(n.options["op"])?.op !== "remove");
  const ifaces = new Map<string, string>();
  for (const n of live) if (BRIDGED.has(n.driver)) ifaces.set(bridgeIfname(n.name), n.name);
  const perVeth = new Set(live.filter((n) => PER_VETH.has(n.driver)).map((n) => n.name));
  for (const c of contexts)
    if (c.level === "l2")
      for (const a of specOf(c).attachments)
        if (perVeth.has(a.network) && a.hostIfname) ifaces.set(a.hostIfname, a.network);
  return { networks: live.map(firewallNetwork), ifaces };
}
