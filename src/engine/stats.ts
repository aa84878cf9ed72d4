/**
 * Traffic counters per context and per network, read from what the kernel counts anyway:
 * - an l2 context: its own interfaces' device counters and its netns's TCP MIB, read inside its netns
 *   (readOwnNetns says why not from the host side).
 * - l3 and socket contexts share the host's stack and devices: their counters come from the cgroup-skb counter
 *   programs on the contexts' cgroup parent, keyed by the context's cgroup (networks/cgroup-counters.ts); drops
 *   are the packets netctx's programs refused.
 * Connections: TCP connections in ESTABLISHED or CLOSE_WAIT (the MIB's CurrEstab): the netns's counter (l2), or the
 * host's sockets by their cgroup through sock_diag (shared stack; a socket of a process in a child cgroup of the
 * context's is not matched).
 * A network's totals are the sum of its contexts' counters on it. The bridge device's own counters are left out:
 * they count only what the host itself exchanged with the contexts (the gateway), which the contexts' counters
 * already hold, so adding them would count that traffic twice.
 */
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { notFound } from "../errors.ts";
import { type Host, hostSlot } from "../host.ts";
import { cgroupId } from "../kernel/cgroup.ts";
import { type DeviceCounters, type NetnsCounters, netnsCounters } from "../kernel/proc-net.ts";
import { openSockDiag, openTcpConnections } from "../kernel/sock-diag.ts";
import { specOf } from "../levels/driver.ts";
import { keptNetnsCounters, releaseNetnsCountersExcept } from "../levels/netns-counter-files.ts";
import { levelDriver } from "../levels/registry.ts";
import type { ContextRecord, NetworkRecord } from "../model/records.ts";
import { readCgroupCounters } from "../networks/cgroup-counters.ts";

export interface Counters {
  bytes: number;
  packets: number;
  drops: number;
}

export interface ContextStats {
  name: string;
  level: string;
  networks: string[];
  /** What the context received. */
  rx: Counters;
  /** What the context sent. */
  tx: Counters;
  /** Open TCP connections: ESTABLISHED or CLOSE_WAIT. */
  connections: number;
}

export interface NetworkStats {
  name: string;
  driver: string;
  rx: Counters;
  tx: Counters;
}

/** `GET /v1/stats`, `netctx stats --json` and the dashboard read this shape. */
export interface StatsView {
  /** When the counters were read, ms since the epoch. */
  at: number;
  node: string;
  contexts: ContextStats[];
  networks: NetworkStats[];
}

/** What a shared-stack context's cgroup counted: both directions, drops being packets netctx's programs refused. */
export interface Directions {
  rx: Counters;
  tx: Counters;
}

const zero = (): Counters => ({ bytes: 0, packets: 0, drops: 0 });

function add(into: Counters, c: Counters): void {
  into.bytes += c.bytes;
  into.packets += c.packets;
  into.drops += c.drops;
}

function directionsOf(c: DeviceCounters): Directions {
  return {
    rx: { bytes: c.rxBytes, packets: c.rxPackets, drops: c.rxDropped },
    tx: { bytes: c.txBytes, packets: c.txPackets, drops: c.txDropped },
  };
}

/** What one context counted on each of its networks, and its connections. */
interface ContextReading {
  record: ContextRecord;
  perNetwork: Map<string, Directions>;
  connections: number;
}

export interface StatsOptions {
  /** Only these contexts (and the networks they are on); every name must exist. */
  names?: readonly string[];
  /**
   * Keep l2 contexts' counter files open between readings (the resident engine, whose removals close them: see
   * levels/netns-counter-files.ts). A one-shot reader leaves them closed, so no netns outlives its context.
   */
  keepNetnsFiles?: boolean;
}

/** The counters of every context (or those named) and of their networks, read now. */
export function statsView(host: Host, options: StatsOptions = {}): StatsView {
  const { shares: _, ...view } = statsReading(host, options);
  return view;
}

/** One context's counters on one of its networks (Prometheus labels each series with both). */
export interface ContextShare extends Directions {
  context: string;
  level: string;
  network: string;
}

/** The view, and each context's share per network, from one reading of the kernel. */
export function statsReading(host: Host, options: StatsOptions = {}): StatsView & { shares: ContextShare[] } {
  const contexts = selected(host, options.names);
  const at = Date.now();
  const shared = contexts.some((k) => onSharedStack(k.record));
  const cgroupCounters: Map<bigint, Directions> = shared ? readCgroupCounters(host) : new Map();
  const cgroupConnections = shared ? connectionsByCgroup() : new Map<bigint, number>();
  const inside = (path: string) =>
    options.keepNetnsFiles ? keptNetnsCounters(host, path) : netnsCounters(path);
  const readings = contexts.map((k) =>
    onSharedStack(k.record)
      ? readShared(k, cgroupCounters, cgroupConnections)
      : readOwnNetns(k.record, inside),
  );
  if (options.keepNetnsFiles && !options.names?.length)
    releaseNetnsCountersExcept(host, new Set(contexts.flatMap((k) => specOf(k.record).netns ?? [])));
  return {
    at,
    node: host.config.cluster?.nodeName ?? hostname(),
    contexts: readings.map(contextStats),
    // Unfiltered, every network shows, those without contexts with zeros.
    networks: networkTotals(host, readings, options.names?.length ? [] : host.store.listNetworks()),
    shares: readings.flatMap((r) =>
      [...r.perNetwork].map(([network, d]) => ({
        context: r.record.name,
        level: r.record.level,
        network,
        rx: d.rx,
        tx: d.tx,
      })),
    ),
  };
}

const onSharedStack = (r: ContextRecord) => levelDriver(r.level).sharedStack;

/** A record as last loaded, with its cgroup's id once the cgroup was there. */
interface KnownContext {
  fingerprint: string;
  record: ContextRecord;
  cgroupId?: bigint;
}

/**
 * The records, loaded again only when their fingerprint changed: loading and checking 1000 records costs ~30 ms, the
 * fingerprints ~1 ms (state-store.ts), and a scrape every few seconds should not pay the first.
 */
const KNOWN = hostSlot(() => new Map<string, KnownContext>());

function knownContexts(host: Host): KnownContext[] {
  const fingerprints = host.store.contextFingerprints();
  const known = host.cache(KNOWN);
  for (const name of known.keys()) if (!fingerprints.has(name)) known.delete(name);
  const out: KnownContext[] = [];
  for (const [name, fingerprint] of fingerprints) {
    let k = known.get(name);
    if (k?.fingerprint !== fingerprint) {
      const record = host.store.getContext(name);
      if (!record) continue;
      k = { fingerprint, record };
      known.set(name, k);
    }
    out.push(k);
  }
  return out;
}

function selected(host: Host, names: readonly string[] | undefined): KnownContext[] {
  const all = knownContexts(host);
  if (!names?.length) return all;
  const byName = new Map(all.map((k) => [k.record.name, k]));
  return names.map((name) => byName.get(name) ?? throwNotFound(name));
}

/** The id of a shared-stack context's cgroup (its inode), kept once read: a cgroup made again is another record. */
function cgroupIdOf(k: KnownContext): bigint | undefined {
  if (k.cgroupId !== undefined) return k.cgroupId;
  const path = specOf(k.record).cgroup;
  if (!path) return undefined;
  try {
    k.cgroupId = cgroupId(path);
  } catch {
    return undefined; // not made yet, or gone
  }
  return k.cgroupId;
}

function throwNotFound(name: string): never {
  throw notFound("context", name);
}

/**
 * A context with a netns of its own (l2) counts with its own interfaces, read inside its netns: both directions as
 * the context sees them, for every driver alike. The host-side veth would do without entering the netns, but it
 * misses what another context's veth hands straight to this one's (the bridge shortcut's bpf_redirect_peer,
 * networks/bridge-shortcut.ts): measured, a context receiving 20 kB of pings showed 152 bytes received there. A
 * macvlan has no host side at all.
 */
function readOwnNetns(record: ContextRecord, read: (netns: string) => NetnsCounters): ContextReading {
  const spec = specOf(record);
  const inside = spec.netns && existsSync(spec.netns) ? read(spec.netns) : undefined;
  const perNetwork = new Map<string, Directions>();
  for (const att of spec.attachments) {
    const c = inside?.devices.get(att.ifname);
    perNetwork.set(att.network, c ? directionsOf(c) : { rx: zero(), tx: zero() });
  }
  return { record, perNetwork, connections: inside?.tcpCurrEstab ?? 0 };
}

/**
 * A shared-stack context's counters are its cgroup's: one program counts per cgroup, not per network, so they go to
 * its first network (a context on several host networks shows its whole traffic there).
 */
function readShared(
  known: KnownContext,
  cgroupCounters: Map<bigint, Directions>,
  cgroupConnections: Map<bigint, number>,
): ContextReading {
  const record = known.record;
  const spec = specOf(record);
  const id = cgroupIdOf(known);
  const perNetwork = new Map<string, Directions>();
  const counted = id === undefined ? undefined : cgroupCounters.get(id);
  spec.attachments.forEach((att, i) => {
    perNetwork.set(att.network, i === 0 && counted ? counted : { rx: zero(), tx: zero() });
  });
  return { record, perNetwork, connections: id === undefined ? 0 : (cgroupConnections.get(id) ?? 0) };
}

/** Open TCP connections of the host's stack by the cgroup of their socket. */
function connectionsByCgroup(): Map<bigint, number> {
  const out = new Map<bigint, number>();
  const diag = openSockDiag();
  try {
    for (const c of openTcpConnections(diag)) out.set(c.cgroupId, (out.get(c.cgroupId) ?? 0) + 1);
  } finally {
    diag.close();
  }
  return out;
}

function contextStats(r: ContextReading): ContextStats {
  const rx = zero();
  const tx = zero();
  for (const d of r.perNetwork.values()) {
    add(rx, d.rx);
    add(tx, d.tx);
  }
  return {
    name: r.record.name,
    level: r.record.level,
    networks: specOf(r.record).attachments.map((a) => a.network),
    rx,
    tx,
    connections: r.connections,
  };
}

/** Each network the readings touch, with the sum of its contexts' counters on it. */
function networkTotals(host: Host, readings: ContextReading[], all: NetworkRecord[]): NetworkStats[] {
  const totals = new Map<string, NetworkStats>(
    all.map((n) => [n.name, { name: n.name, driver: n.driver, rx: zero(), tx: zero() }]),
  );
  for (const r of readings)
    for (const [name, d] of r.perNetwork) {
      let t = totals.get(name);
      if (!t) {
        t = { name, driver: host.store.getNetwork(name)?.driver ?? "", rx: zero(), tx: zero() };
        totals.set(name, t);
      }
      add(t.rx, d.rx);
      add(t.tx, d.tx);
    }
  return [...totals.values()];
}
