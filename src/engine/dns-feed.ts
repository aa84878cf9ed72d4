/**
 * What the engine's DNS server serves, read from the store: the networks that answer DNS (all but `--no-dns` ones)
 * with the gateway addresses to listen on, and the ready contexts with their names and addresses. The feed keeps
 * what it last sent and, after each request, loads only the contexts whose records changed (by fingerprint), so a
 * create costs O(1) record loads at any population.
 */
import type { DnsContext, DnsNetwork, DnsSnapshot, DnsUpdate } from "../dns/feed.ts";
import type { ContextResolver } from "../dns/resolv-conf.ts";
import type { Host } from "../host.ts";
import { specOf } from "../levels/driver.ts";
import type { ContextRecord, NetworkRecord } from "../model/records.ts";

/** A network made with `--no-dns` (options.dns false) has no server on its gateways and no names. */
export function servesDns(net: NetworkRecord): boolean {
  return net.options["dns"] !== false;
}

/** The gateways on this host: the subnets' own, or for a cluster-scoped network the gateways of its blocks here. */
function gatewaysOf(net: NetworkRecord): string[] {
  const own = net.subnets.flatMap((s) => (s.gateway ? [s.gateway] : []));
  return [...own, ...(net.cluster?.blocks.map((b) => b.gateway) ?? [])];
}

function dnsNetworks(host: Host): DnsNetwork[] {
  return host.store
    .listNetworks()
    .filter((n) => servesDns(n) && n.op === undefined)
    .map((n) => ({ name: n.name, subnets: n.subnets.map((s) => s.cidr), listen: gatewaysOf(n) }));
}

/**
 * A context answers once it is ready and stops as soon as its removal starts. Attachments on networks that serve
 * no DNS are kept: the tables ignore them, and take them up if such a network is served later.
 */
function dnsContext(record: ContextRecord): DnsContext | undefined {
  if (record.status !== "ready") return undefined;
  const spec = specOf(record);
  return {
    name: record.name,
    aliases: spec.aliases ?? [],
    attachments: spec.attachments.map((a) => ({
      network: a.network,
      addresses: a.addresses.map((cidr) => cidr.split("/")[0]!),
    })),
  };
}

/**
 * The DNS servers a context is to use: per network it is on that serves DNS, the gateways there on which the engine's
 * server listens now (`listening`; v4 before v6), with NETWORK.DOMAIN to search. Undefined when there is none: no
 * engine, `serve --no-dns`, or only `--no-dns` networks; the context then keeps the host's resolv.conf.
 */
export function contextResolver(
  host: Host,
  record: ContextRecord,
  dns: { domain: string; listening: readonly string[] },
): ContextResolver | undefined {
  const listening = new Set(dns.listening);
  const nameservers: string[] = [];
  const search: string[] = [];
  for (const a of specOf(record).attachments) {
    const net = host.store.getNetwork(a.network);
    if (!net || !servesDns(net)) continue;
    const served = gatewaysOf(net).filter((g) => listening.has(g));
    if (served.length === 0) continue;
    nameservers.push(...served.filter((g) => !g.includes(":")), ...served.filter((g) => g.includes(":")));
    search.push(`${net.name}.${dns.domain}`);
  }
  return nameservers.length > 0 ? { nameservers: [...new Set(nameservers)], search } : undefined;
}

/** Everything at once (`netctx resolve` without an engine). */
export function dnsSnapshot(host: Host): DnsSnapshot {
  return {
    networks: dnsNetworks(host),
    contexts: host.store.listContexts().flatMap((c) => dnsContext(c) ?? []),
  };
}

export class DnsFeed {
  private readonly networks = new Map<string, string>();
  private readonly fingerprints = new Map<string, string>();
  private readonly served = new Set<string>();
  private readonly remote = new Map<string, string>();

  /**
   * What changed since the last call (the first call: everything). `remote`: other hosts' contexts on overlay
   * networks (engine/overlay-names.ts), each under its key NAME@NODE.
   */
  changes(host: Host, remote: readonly DnsContext[] = []): DnsUpdate[] {
    const updates: DnsUpdate[] = [];
    const nets = dnsNetworks(host);
    const netNames = new Set(nets.map((n) => n.name));
    // Networks first, so the tables know a network before the contexts on it.
    for (const n of nets) {
      const text = JSON.stringify(n);
      if (this.networks.get(n.name) === text) continue;
      this.networks.set(n.name, text);
      updates.push({ kind: "network", network: n });
    }
    const now = host.store.contextFingerprints();
    for (const name of this.fingerprints.keys())
      if (!now.has(name)) {
        this.fingerprints.delete(name);
        if (this.served.delete(name)) updates.push({ kind: "context-gone", name });
      }
    for (const [name, fp] of now) {
      if (this.fingerprints.get(name) === fp) continue;
      this.fingerprints.set(name, fp);
      const record = host.store.getContext(name);
      const context = record && dnsContext(record);
      if (context) {
        this.served.add(name);
        updates.push({ kind: "context", context });
      } else if (this.served.delete(name)) updates.push({ kind: "context-gone", name });
    }
    const remoteNow = new Map(remote.map((c) => [c.key ?? c.name, c]));
    for (const key of [...this.remote.keys()])
      if (!remoteNow.has(key)) {
        this.remote.delete(key);
        updates.push({ kind: "context-gone", name: key });
      }
    for (const [key, context] of remoteNow) {
      const text = JSON.stringify(context);
      if (this.remote.get(key) === text) continue;
      this.remote.set(key, text);
      updates.push({ kind: "context", context });
    }
    for (const name of [...this.networks.keys()])
      if (!netNames.has(name)) {
        this.networks.delete(name);
        updates.push({ kind: "network-gone", name });
      }
    return updates;
  }
}
