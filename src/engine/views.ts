/** What `inspect` and `ls` show of a context: the record plus what the kernel says now. */
import { existsSync } from "node:fs";
import type { Host } from "../host.ts";
import { Rtnl } from "../kernel/rtnl.ts";
import { specOf } from "../levels/driver.ts";
import { formatHostPort } from "../model/host-port.ts";
import { type Bandwidth, formatPublish } from "../model/publish.ts";
import type { ContextRecord } from "../model/records.ts";
import { liveBandwidth } from "../networks/bandwidth.ts";
import { keptDriftReading } from "./drift-watch.ts";
import { missingByContext } from "./reconcile/gc.ts";

export interface InterfaceView {
  name: string;
  network: string;
  hostIfname?: string;
  addresses: string[];
  gateways: string[];
  mac?: string;
  mtu: number;
}

export interface ContextView {
  name: string;
  level: string;
  status: string;
  networks: string[];
  addresses: string[];
  netns?: string;
  cgroup?: string;
  table?: number;
  interfaces: InterfaceView[];
  /** The context's labels: the user's and netctx's own marks (a scene, a CNI owner, a pod). */
  labels?: Record<string, string>;
  /** `[HOSTIP:]HOSTPORT:PORT/proto` as recorded. */
  publish?: string[];
  allowHostPorts?: string[];
  /** Recorded limits (bits per second) and, live, what tc holds now. */
  bandwidth?: Bandwidth & { live?: ReturnType<typeof liveBandwidth> };
  createdAt?: string;
  /** The cluster node the context lives on, when it is on a cluster-scoped (overlay) network. */
  node?: string;
  /** Objects a ready context (or its network) declares and the kernel lacks: its status is then "degraded". */
  missing?: string[];
}

/** Every context as `ls` shows it: the records, with what the kernel lacks of each (one reading of the kernel). */
export function contextViews(host: Host): ContextView[] {
  const { contexts, missing } = listing(host);
  return contexts.map((c) => contextView(host, c, false, missing.get(c.name)));
}

/** The records and their drift: from the reading a resident engine keeps (drift-watch.ts), or read now. */
function listing(host: Host): { contexts: ContextRecord[]; missing: Map<string, string[]> } {
  const kept = keptDriftReading(host);
  if (kept) {
    try {
      return kept.listing();
    } catch {
      // As lacking(): records as they are when the kernel cannot be read.
    }
  }
  return { contexts: host.store.listContexts(), missing: lacking(host) };
}

/** One context as `inspect` shows it: the record, what the kernel says now and what it lacks. */
export function inspectView(host: Host, record: ContextRecord): ContextView {
  const view = contextView(host, record, true, lacking(host, record.name).get(record.name));
  const node = specOf(record)
    .attachments.map((a) => host.store.getNetwork(a.network)?.cluster?.node)
    .find((n) => n !== undefined);
  return node === undefined ? view : { ...view, node };
}

/**
 * The drift check must not cost a listing its answer: a host where it cannot run (no nft) shows records as they are.
 * A resident engine answers from the reading it keeps (drift-watch.ts).
 */
function lacking(host: Host, only?: string): Map<string, string[]> {
  const names = only === undefined ? undefined : [only];
  try {
    return keptDriftReading(host)?.missing(names) ?? missingByContext(host, names);
  } catch {
    return new Map();
  }
}

export function contextView(
  host: Host,
  record: ContextRecord,
  live = true,
  missing: string[] = [],
): ContextView {
  const spec = specOf(record);
  const macs = live && spec.netns ? liveMacs(spec.netns) : new Map<string, string>();
  const interfaces = spec.attachments.map((a): InterfaceView => {
    const mac = macs.get(a.ifname) ?? a.mac;
    return {
      name: a.ifname,
      network: a.network,
      ...(a.hostIfname ? { hostIfname: a.hostIfname } : {}),
      addresses: a.addresses,
      gateways: a.gateways,
      ...(mac ? { mac } : {}),
      mtu: a.mtu,
    };
  });
  const degraded = record.status === "ready" && missing.length > 0;
  return {
    name: record.name,
    level: record.level,
    status: degraded ? "degraded" : record.status,
    networks: spec.attachments.map((a) => a.network),
    addresses: spec.attachments.flatMap((a) => a.addresses),
    ...(spec.netns ? { netns: spec.netns } : {}),
    ...(spec.cgroup ? { cgroup: spec.cgroup } : {}),
    ...(spec.table !== undefined ? { table: spec.table } : {}),
    interfaces,
    ...(spec.labels && Object.keys(spec.labels).length ? { labels: { ...spec.labels } } : {}),
    ...(spec.publish?.length ? { publish: spec.publish.map(formatPublish) } : {}),
    ...(spec.allowHostPorts?.length ? { allowHostPorts: spec.allowHostPorts.map(formatHostPort) } : {}),
    ...(spec.bandwidth
      ? { bandwidth: bandwidthView(host, spec.bandwidth, live ? spec.attachments[0]?.hostIfname : undefined) }
      : {}),
    ...(record.createdAt ? { createdAt: record.createdAt } : {}),
    ...(degraded ? { missing } : {}),
  };
}

function bandwidthView(
  host: Host,
  bw: Bandwidth,
  hostIfname: string | undefined,
): Bandwidth & { live?: ReturnType<typeof liveBandwidth> } {
  return hostIfname ? { ...bw, live: liveBandwidth(host, hostIfname) } : { ...bw };
}

function liveMacs(netns: string): Map<string, string> {
  const macs = new Map<string, string>();
  if (!existsSync(netns)) return macs;
  const rtnl = Rtnl.open(netns);
  try {
    for (const link of rtnl.linkList()) if (link.mac) macs.set(link.name, link.mac);
  } finally {
    rtnl.close();
  }
  return macs;
}
