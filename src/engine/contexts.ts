/**
 * Context lifecycle. create: validate, record intent and allocate addresses in one transaction, make the kernel
 * objects, mark ready; any failure undoes the kernel work and the record, so state and kernel agree.
 * rm: idempotent, tolerates missing kernel objects.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { conflict, invalid, NetctxError, notFound } from "../errors.ts";
import { withGuardBatch } from "../firewall/antispoof.ts";
import { type Host, hostSlot } from "../host.ts";
import { contextsCgroupParent } from "../kernel/cgroup.ts";
import { netnsPath } from "../kernel/netns.ts";
import { type ContextSpec, specOf } from "../levels/driver.ts";
import { FIRST_L3_TABLE } from "../levels/l3.ts";
import { evictProcesses, refuseWhileRunning } from "../levels/processes.ts";
import { levelDriver } from "../levels/registry.ts";
import { checkRecordedLabels } from "../model/labels.ts";
import { checkIfname, checkName, contextNetnsName, hostVethIfname } from "../model/names.ts";
import type { ContextRecord, Level, NetworkRecord } from "../model/records.ts";
import { checkRouteArgs } from "../model/route.ts";
import { type ContextInput, ContextInputSchema, parseInput } from "../model/schemas.ts";
import { parseStoreMark } from "../model/store-mark.ts";
import { cidrContains, macProblem, parseIp, parseSubnet, randomMac } from "../net/cidr.ts";
import type { Attachment } from "../networks/driver.ts";
import { hostDevice } from "../networks/host-net.ts";
import { networkDriver } from "../networks/registry.ts";
import { removePrivateTmp } from "../state/private-tmp.ts";
import { applyExtras, checkPublishFree, parseExtras, removeExtras } from "./context-extras.ts";
import { opMark } from "./intent.ts";
import { syncPolicyTables } from "./policy-sync.ts";
import { declareAll } from "./reconcile/declare.ts";

/** A context input checked against the store: what its record and attachments will be made of. */
interface ContextPlan {
  input: ContextInput;
  networks: NetworkRecord[];
  requested: string[][];
  mac: string | undefined;
  devices: string[];
  hostIfnames: string[];
  routes: NonNullable<ContextInput["routes"]>;
  extras: ReturnType<typeof parseExtras>;
}

export function createContext(host: Host, raw: unknown): ContextRecord {
  const plan = planContext(host, raw);
  finishRemoval(host, plan.input.name);
  const record = withPendingRemovalsFinished(host, () =>
    host.store.transaction(() => recordContext(host, plan, new TableFinder(host))),
  );
  // The tables hold the context before its links exist: on a default-deny network it is never open.
  syncOrForget(host, [record]);
  host.pause("create:after-record");
  realizeContext(host, record);
  host.pause("create:before-ready");
  record.status = "ready";
  host.store.updateContext(record);
  return record;
}

/**
 * Create several contexts as one batch (netctx apply): one state transaction records them all and allocates
 * their addresses, the kernel work runs per context with the anti-spoofing guards of the whole batch in one nft
 * transaction, and one more state transaction marks them ready. A failure undoes the whole batch.
 * Guards land after the links come up here, but before the contexts are ready: nothing of a context runs
 * (`netctx exec` refuses contexts that are not ready), so only the kernel's own packets could pass unguarded.
 */
export function createContexts(host: Host, raws: readonly unknown[]): ContextRecord[] {
  const plans = raws.map((raw) => planContext(host, raw));
  for (const plan of plans) finishRemoval(host, plan.input.name);
  const records = withPendingRemovalsFinished(host, () =>
    host.store.transaction(() => {
      // One reading of the tables in use serves the whole batch (it dumps every rule).
      const tables = new TableFinder(host);
      return plans.map((plan) => recordContext(host, plan, tables));
    }),
  );
  syncOrForget(host, records);
  const realized: ContextRecord[] = [];
  try {
    withGuardBatch(host, () => {
      for (const record of records) {
        realizeContext(host, record);
        realized.push(record);
      }
    });
  } catch (err) {
    for (const record of realized) {
      try {
        removeContext(host, record.name);
      } catch {
        // gc finishes what this leaves; the original error is the one to report
      }
    }
    // The one that failed undid itself; the ones never reached hold only records and leases.
    for (const record of records.slice(realized.length + 1)) forget(host, record.name);
    syncAfterUndo(
      host,
      records.map((r) => r.name),
    );
    throw err;
  }
  host.store.transaction(() => {
    for (const record of records) {
      record.status = "ready";
      host.store.updateContext(record);
    }
  });
  return records;
}

/**
 * Every check createContexts makes, and the records and leases it writes, in the caller's state transaction and
 * without touching the kernel: apply runs a whole plan this way and rolls the transaction back (its dry run, and
 * its check before a real apply), so both refuse what the real creation would. `freedPaths`: the namespaces
 * and cgroups of contexts the plan removes first, which will be gone by then.
 */
export function contextRehearsal(host: Host, freedPaths: ReadonlySet<string>): (raw: unknown) => void {
  const tables = new TableFinder(host);
  return (raw) => {
    recordContext(host, planContext(host, raw), tables, freedPaths);
  };
}

/** removeContext's refusals (processes still running), then its record changes, in the caller's transaction. */
export function rehearseRemoval(host: Host, name: string): void {
  const found = host.store.getContext(name);
  if (!found) return;
  refuseWhileRunning(name, specOf(found));
  forget(host, name);
}

/** Parse and check an input against the store and the kernel-independent rules; changes nothing. */
function planContext(host: Host, raw: unknown): ContextPlan {
  const input = parseInput(ContextInputSchema, raw);
  checkName("name", input.name);
  if (input.labels) checkRecordedLabels("labels", input.labels);
  const level = levelDriver(input.level);
  const networks = resolveNetworks(host, input);
  const requested = splitRequestedIps(input, networks);
  const mac = input.mac === undefined ? undefined : checkMac(input.mac);
  const ifnames = networks.map((_, i) => input.ifnames?.[i] ?? `eth${i}`);
  for (const n of ifnames) checkIfname("ifname", n);
  if (new Set(ifnames).size !== ifnames.length)
    throw invalid("ifname", "two networks given the same interface name");
  const hostIfnames = networks.map((_, i) => (level.sharedStack ? "" : hostVethIfname(input.name, i)));
  // Shared-stack contexts keep their addresses on the host device of their network.
  const devices = networks.map((net, i) => (level.sharedStack ? hostDevice(net.name) : ifnames[i]!));
  const routes = input.routes ?? [];
  if (routes.length && !level.ownTable)
    throw invalid("route", "only l3 contexts have a routing table of their own");
  checkRouteArgs(
    routes,
    networks.flatMap((n) => n.subnets.map((s) => s.cidr)),
  );
  const extras = parseExtras(input);
  return { input, networks, requested, mac, devices, hostIfnames, routes, extras };
}

/** Insert the "creating" record and allocate its addresses; runs inside the caller's state transaction. */
function recordContext(
  host: Host,
  plan: ContextPlan,
  tables: TableFinder,
  freedPaths: ReadonlySet<string> = new Set(),
): ContextRecord {
  const { input, networks, requested, mac, devices, hostIfnames, routes, extras } = plan;
  if (host.store.getContext(input.name)) throw conflict("name", `context "${input.name}" already exists`);
  checkPublishFree(host.store, input.name, extras.publish);
  const spec: ContextSpec = { attachments: [] };
  if (extras.publish.length) spec.publish = extras.publish;
  if (extras.bandwidth) spec.bandwidth = extras.bandwidth;
  if (extras.allowHostPorts.length) spec.allowHostPorts = extras.allowHostPorts;
  const level = levelDriver(input.level);
  if (!level.sharedStack && input.netns === undefined) {
    spec.netns = netnsPath(contextNetnsName(input.name));
    // Not ours to reuse, and a failed create would delete it: a crash's leftover is gc's to remove.
    if (existsSync(spec.netns) && !freedPaths.has(spec.netns))
      throw conflict(
        "name",
        `network namespace ${contextNetnsName(input.name)} already exists (netctx gc removes leftovers)`,
      );
  }
  if (input.netns !== undefined) {
    if (level.sharedStack) throw invalid("netns", "only l2 contexts live in a network namespace");
    spec.netns = input.netns;
    spec.netnsExternal = true;
  }
  if (input.labels) spec.labels = { ...input.labels };
  if (input.aliases?.length) spec.aliases = [...input.aliases];
  if (level.sharedStack) {
    spec.cgroup = join(contextsCgroupParent(host.config.cgroupParent), input.name);
    // Another store's context of the same name (stores may share the cgroup parent): marking and confining it would
    // take it over, and a failed create would remove it. A crash's leftover of our own is gc's to remove.
    if (existsSync(spec.cgroup) && !freedPaths.has(spec.cgroup))
      throw conflict("name", `cgroup ${spec.cgroup} already exists (netctx gc removes leftovers)`);
  }
  if (level.ownTable) {
    spec.table = tables.take();
    spec.routes = routes;
  }
  refuseHeldDevices(host, hostIfnames);
  // gc rolls back a "creating" record only once this process is gone.
  const op = opMark("create");
  const rec: ContextRecord = {
    name: input.name,
    level: input.level,
    status: "creating",
    spec: { ...spec },
    op,
  };
  host.store.insertContext(rec);
  spec.attachments = networks.map((net, i) =>
    leaseAttachment(host, net, input.name, requested[i], {
      ifname: devices[i]!,
      hostIfname: hostIfnames[i]!,
      // Chosen here rather than by the kernel so that the record alone names every anti-spoofing element.
      ...(!level.sharedStack ? { mac: (i === 0 ? mac : undefined) ?? randomMac() } : {}),
    }),
  );
  rec.spec = { ...spec };
  host.store.updateContext(rec);
  return rec;
}

/**
 * A new context's host-side links must be nobody else's, or the veth code would fail half-way or (before it checked)
 * take the holder's link for a leftover: another context's veth (records made while later veths were nc-NAME-1 can
 * still meet a context NAME-1), a network's device (context "web" on network "web": both nc-web), a link another store
 * made or one no store marked. A link of this store's that no record names is a leftover (an rm's veth the kernel is
 * still taking away with its netns): the veth code replaces it. Runs in the caller's state transaction, so contexts
 * recorded earlier in the same batch count.
 */
function refuseHeldDevices(host: Host, hostIfnames: readonly string[]): void {
  const wanted = hostIfnames.filter((n) => n !== "");
  if (wanted.length === 0) return;
  const devices = declareAll(host, host.store.listNetworks(), []).objects.filter((d) => d.kind === "link");
  for (const name of wanted) {
    const context = host.store.hostIfnameHolders(name)[0];
    if (context !== undefined) throw conflict("name", `device ${name} belongs to context "${context}"`);
    const device = devices.find((d) => (d.prefix ? name.startsWith(d.id) : name === d.id));
    if (device)
      throw conflict("name", `device ${name} belongs to ${device.owner.replace(/ (.*)$/, ' "$1"')}`);
    const link = host.rtnl.linkGet(name);
    if (!link) continue;
    const mark = parseStoreMark(link.alias);
    if (mark?.id === host.store.id) continue;
    if (mark)
      throw conflict("name", `device ${name} belongs to the store at ${mark.dir ?? `with id ${mark.id}`}`);
    throw conflict(
      "name",
      `device ${name} exists and no netctx store marked it as its own (remove it by hand if it is a leftover)`,
    );
  }
}

/**
 * A context's attachment to `net` with its addresses leased from the network's IPAM (`requested` where given), in
 * the caller's state transaction (create, network connect).
 */
export function leaseAttachment(
  host: Host,
  net: NetworkRecord,
  owner: string,
  requested: string[] | undefined,
  link: { ifname: string; hostIfname: string; mac?: string },
): Attachment {
  const leases = host.store.allocate(net.name, owner, requested);
  return {
    network: net.name,
    ifname: link.ifname,
    hostIfname: link.hostIfname,
    addresses: leases.map((l) => networkDriver(net.driver).contextAddress(l)),
    // A cluster-scoped network's gateway is the one of the node's block that holds the address.
    gateways: net.cluster
      ? leases.flatMap((l) => (l.gateway ? [l.gateway] : []))
      : net.subnets.flatMap((s) => (s.gateway ? [s.gateway] : [])),
    mtu: net.mtu,
    ...(link.mac !== undefined ? { mac: link.mac } : {}),
  };
}

/** Make the kernel objects of a recorded context; on failure undo them and the record, then rethrow. */
function realizeContext(host: Host, record: ContextRecord): void {
  const spec = specOf(record);
  const level = levelDriver(record.level);
  try {
    level.create(host, record.name, spec);
    applyExtras(host, record.name, spec);
  } catch (err) {
    try {
      removeExtras(host, record.name, spec);
    } catch {
      // gc catches what this left; the level's teardown must still run.
    }
    try {
      level.teardown(host, record.name, spec);
    } catch {
      // The original error is what the user needs; gc catches anything this left.
    }
    forget(host, record.name);
    syncAfterUndo(host, [record.name]);
    throw err;
  }
}

/** Write the tables with the new records in them; if that fails, the records go again (nothing of theirs is made). */
function syncOrForget(host: Host, records: readonly ContextRecord[]): void {
  try {
    syncPolicyTables(host, records);
  } catch (err) {
    const names = records.map((r) => r.name);
    for (const name of names) forget(host, name);
    syncAfterUndo(host, names);
    throw err;
  }
}

/** The tables without records an undo removed; a failure here is not the one to report (gc and the next change fix it). */
function syncAfterUndo(host: Host, names: readonly string[]): void {
  try {
    syncPolicyTables(host, names);
  } catch {
    // the original error is reported by the caller
  }
}

export interface RemoveOptions {
  /** Kill the context's processes (its whole cgroup subtree, or every task in its netns) instead of refusing. */
  force?: boolean;
}

/**
 * Without force, a context whose processes still run is refused before anything changes: the record stays as it
 * was (ready, usable by exec). With force they are killed after the record is marked "removing", so no exec
 * starts a new one meanwhile.
 */
export function removeContext(host: Host, name: string, opts: RemoveOptions = {}): ContextRecord | undefined {
  finishRemoval(host, name);
  const found = host.store.getContext(name);
  if (!found) return undefined;
  if (!opts.force) refuseWhileRunning(name, specOf(found));
  const record = markRemoving(host, found);
  if (opts.force) {
    try {
      evictProcesses(name, specOf(record));
    } catch (err) {
      // Nothing of the context was undone: it stays what it was.
      host.store.updateContext(found);
      throw err;
    }
  }
  tearDown(host, record);
  return record;
}

/**
 * Remove a context in two steps: mark it "removing" now, and leave its kernel teardown to host.defer(), which the
 * engine runs when requests pause and a one-shot command at its end (CNI DEL: the runtime deletes the netns right
 * after, and the kernel then takes the veth with it, so the teardown that follows has little left to do).
 * Until then the record keeps its addresses, so nothing reuses them while the interface may still exist.
 * Returns false when there is no such context.
 */
export function removeContextLater(host: Host, name: string): boolean {
  if (pendingRemovals(host).has(name)) return true;
  const found = host.store.getContext(name);
  if (!found) return false;
  refuseWhileRunning(name, specOf(found));
  const record = markRemoving(host, found);
  pendingRemovals(host).set(name, record);
  host.defer(finishRemovals);
  return true;
}

/** Tear down `name` now if removeContextLater() queued it (before a context of the same name is made again). */
export function finishRemoval(host: Host, name: string): void {
  const record = pendingRemovals(host).get(name);
  if (!record) return;
  pendingRemovals(host).delete(name);
  tearDown(host, record);
}

/** Queued removals still hold their addresses: a pool they exhaust gets them back, and the allocation one more try. */
function withPendingRemovalsFinished<T>(host: Host, allocate: () => T): T {
  try {
    return allocate();
  } catch (err) {
    if (!(err instanceof NetctxError && err.code === "exhausted") || pendingRemovals(host).size === 0)
      throw err;
    finishRemovals(host);
    return allocate();
  }
}

/** Removals queued by removeContextLater, per Host. */
const PENDING_REMOVALS = hostSlot(() => new Map<string, ContextRecord>());
const pendingRemovals = (host: Host) => host.cache(PENDING_REMOVALS);

function finishRemovals(host: Host): void {
  const pending = pendingRemovals(host);
  let failure: unknown;
  for (const name of [...pending.keys()]) {
    try {
      finishRemoval(host, name);
    } catch (err) {
      // The record stays "removing" for gc; the others still go.
      failure ??= err;
    }
  }
  if (failure !== undefined) throw failure;
}

/** A marked copy; the record given stays as it was, for a caller that has to put it back. */
function markRemoving(host: Host, found: ContextRecord): ContextRecord {
  const record = structuredClone(found);
  record.status = "removing";
  record.op = opMark("remove");
  host.store.updateContext(record);
  host.pause("rm:after-mark");
  return record;
}

/**
 * A teardown that fails half-way (a process joined the cgroup after the check) cannot be rolled back, so the record
 * stays "removing"; but it loses its op mark. gc finishes "removing" records whose owner is gone and leaves the ones
 * a live process owns alone, and the resident engine, which owns every rm it ran, lives on: with the mark, gc would
 * skip the record for as long as the engine runs. Without it gc (or another rm) finishes it once the cause is gone.
 */
function tearDown(host: Host, record: ContextRecord): void {
  try {
    removeExtras(host, record.name, specOf(record));
    levelDriver(record.level).teardown(host, record.name, specOf(record));
  } catch (err) {
    const { op: _op, ...unmarked } = record;
    host.store.updateContext(unmarked);
    throw err;
  }
  host.pause("rm:after-teardown");
  forget(host, record.name);
  syncPolicyTables(host, [{ removed: record.name }]);
}

/**
 * Hands out the lowest routing table numbers that no l3 context holds and no rule or route in the kernel uses
 * (another tool's table, or one a crashed create left behind, which teardown would flush). Reads the store and the
 * rules once, on first use, inside the creating transaction; each take() marks its number used.
 */
class TableFinder {
  private used: Set<number> | undefined;

  constructor(private readonly host: Host) {}

  /**
   * The lowest table no context records and no rule points to, that holds no route either (someone else's). The
   * routes are checked table by table: dumping every table would read each l3 context's routes and every host
   * address's local route, O(contexts) per batch.
   */
  take(): number {
    this.used ??= this.read();
    for (let table = FIRST_L3_TABLE; ; table++) {
      if (this.used.has(table)) continue;
      this.used.add(table);
      if (!this.host.rtnl.tableHasRoutes(4, table) && !this.host.rtnl.tableHasRoutes(6, table)) return table;
    }
  }

  private read(): Set<number> {
    const used = new Set(this.host.store.contextTables());
    for (const family of [4, 6] as const)
      for (const table of this.host.rtnl.ruleTables(family)) used.add(table);
    return used;
  }
}

function forget(host: Host, name: string): void {
  host.store.transaction(() => {
    host.store.releaseAll(name);
    host.store.deleteContext(name);
  });
  removePrivateTmp(host.store.dir, name);
}

function resolveNetworks(host: Host, input: ContextInput): NetworkRecord[] {
  const seen = new Set<string>();
  return input.networks.map((name) => {
    if (seen.has(name)) throw conflict("network", `joins network "${name}" twice`);
    seen.add(name);
    return networkForLevel(host, name, input.level);
  });
}

/** The network `name`, refused when it does not exist or its driver does not serve contexts of `level`. */
export function networkForLevel(host: Host, name: string, level: Level): NetworkRecord {
  // A name no network can have is refused as such (bounded, escaped) rather than echoed whole as "not found".
  checkName("network", name, 32);
  const net = host.store.getNetwork(name);
  if (!net) throw notFound("network", name);
  const driver = networkDriver(net.driver);
  if (!driver.levels.includes(level))
    throw invalid(
      "level",
      `network "${name}" (driver ${net.driver}) does not serve level ${level} (it serves ${driver.levels.join(", ")})`,
    );
  return net;
}

/** Each requested address goes to the network whose subnet holds it. */
function splitRequestedIps(input: ContextInput, networks: NetworkRecord[]): string[][] {
  const perNetwork = networks.map((): string[] => []);
  for (const text of input.ips ?? []) {
    const ip = parseIp(text, "ip");
    const index = networks.findIndex((net) =>
      net.subnets.some((s) => cidrContains(parseSubnet(s.cidr, "subnet"), ip.family, ip.addr)),
    );
    if (index < 0) {
      const all = networks.flatMap((n) => n.subnets.map((s) => s.cidr)).join(", ");
      throw invalid("ip", `${ip.text} is outside the subnets of the context's networks (${all})`);
    }
    perNetwork[index]!.push(ip.text);
  }
  return perNetwork;
}

function checkMac(text: string): string {
  const problem = macProblem(text);
  if (problem) throw invalid("mac", problem);
  return text.toLowerCase();
}
