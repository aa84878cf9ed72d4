/**
 * What the engine's DNS server serves, read from the store: the networks that answer DNS (all but `--no-dns` ones)
 * with the gateway addresses to listen on, and the ready contexts with their names and addresses.
 */
import type { DnsContext, DnsNetwork, DnsSnapshot } from "../dns/feed.ts";
import type { Host } from "../host.ts";
import { specOf } from "../levels/driver.ts";
import type { NetworkRecord } from "../model/records.ts";

/** A network made with `--no-dns` (options.dns false) has no server on its gateways and no names. */
export function servesDns(net: NetworkRecord): boolean {
  return net.options["dns"] !== false;
}

/** The gateways on this host: the subnets' own, or for a cluster-scoped network the gateways of its blocks here. */
function gatewaysOf(net: NetworkRecord): string[] {
  const own = net.subnets.flatMap((s) => (s.gateway ? [s.gateway] : []));
  return [...own, ...(net.cluster?.blocks.map((b) => b.gateway) ?? [])];
}

export function dnsSnapshot(host: Host): DnsSnapshot {
  const networks: DnsNetwork[] = host.store
    .listNetworks()
    .filter((n) => servesDns(n) && n.op === undefined)
    .map((n) => ({ name: n.name, subnets: n.subnets.map((s) => s.cidr), listen: gatewaysOf(n) }));
  const served = new Set(networks.map((n) => n.name));
  const contexts: DnsContext[] = host.store
    .listContexts()
    // A context answers once it is ready and stops as soon as its removal starts.
    .filter((c) => c.status === "ready")
    .map((c) => {
      const spec = specOf(c);
      return {
        name: c.name,
        aliases: spec.aliases ?? [],
        attachments: spec.attachments
          .filter((a) => served.has(a.network))
          .map((a) => ({ network: a.network, addresses: a.addresses.map((cidr) => cidr.split("/")[0]!) })),
      };
    })
    .filter((c) => c.attachments.length > 0);
  return { networks, contexts };
}
