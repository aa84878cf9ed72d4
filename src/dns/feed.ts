/**
 * What the engine tells the DNS server about its networks and contexts: one snapshot of the names it serves, and
 * the changes between two snapshots, which the server applies to its tables in place (tables.ts).
 */

/** A network whose gateways answer DNS (a network made with `--no-dns` is not in the feed at all). */
export interface DnsNetwork {
  name: string;
  /** Its subnets (CIDRs): a sender inside one is served, one outside every served subnet is not. */
  subnets: string[];
  /** The addresses the server listens on for this network (its gateways on this host). */
  listen: string[];
}

/** A ready context with its names and, per network it is on, its bare addresses there. */
export interface DnsContext {
  name: string;
  /**
   * The tables' key, when the name alone is not unique: a context on another host of an overlay network is
   * NAME@NODE (a local context of the same name may exist). Updates name a context by it (`context-gone`).
   */
  key?: string;
  aliases: string[];
  attachments: { network: string; addresses: string[] }[];
}

export interface DnsSnapshot {
  networks: DnsNetwork[];
  contexts: DnsContext[];
}

export type DnsUpdate =
  | { kind: "network"; network: DnsNetwork }
  | { kind: "network-gone"; name: string }
  | { kind: "context"; context: DnsContext }
  /** `name`: the context's key (DnsContext.key ?? name). */
  | { kind: "context-gone"; name: string };

/** The updates that turn the tables built from `before` into those of `after`: only what changed. */
export function snapshotChanges(before: DnsSnapshot, after: DnsSnapshot): DnsUpdate[] {
  const updates: DnsUpdate[] = [];
  const oldNets = new Map(before.networks.map((n) => [n.name, JSON.stringify(n)]));
  const newNets = new Set(after.networks.map((n) => n.name));
  const oldCtxs = new Map(before.contexts.map((c) => [c.name, JSON.stringify(c)]));
  const newCtxs = new Set(after.contexts.map((c) => c.name));
  // Networks first, so a context's attachment never names a network the server does not know yet.
  for (const n of after.networks)
    if (oldNets.get(n.name) !== JSON.stringify(n)) updates.push({ kind: "network", network: n });
  for (const c of before.contexts)
    if (!newCtxs.has(c.name)) updates.push({ kind: "context-gone", name: c.name });
  for (const c of after.contexts)
    if (oldCtxs.get(c.name) !== JSON.stringify(c)) updates.push({ kind: "context", context: c });
  for (const n of before.networks)
    if (!newNets.has(n.name)) updates.push({ kind: "network-gone", name: n.name });
  return updates;
}

export const EMPTY_SNAPSHOT: DnsSnapshot = { networks: [], contexts: [] };
