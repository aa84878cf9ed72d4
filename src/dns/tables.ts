/**
 * The answering tables of the DNS server: per network, the names its contexts answer to, and who owns each address.
 * Changed in place, one update at a time (JavaScript runs one message to completion before the next query), so a
 * query that races an update sees the tables before it or after it, never half of it and never an empty table:
 * there is no reload gap of the kind aardvark-dns has while it rereads its files.
 */
import { type Cidr, cidrContains, parseIp, parseSubnet } from "../net/cidr.ts";
import type { DnsContext, DnsNetwork, DnsUpdate } from "./feed.ts";

/** What the tables say about a name, for a sender that sees `view`. */
export interface NameAnswer {
  /** The name is ours to answer (a context's name or alias anywhere, under our domain, or one label): never forwarded. */
  owned: boolean;
  /** Some context in the view answers to it (NOERROR, even when it has no address of the asked family). */
  found: boolean;
  v4: string[];
  v6: string[];
}

export interface ReverseAnswer {
  /** The address is inside a served subnet: the answer is ours (a PTR or NXDOMAIN), never forwarded. */
  owned: boolean;
  names: string[];
}

interface ServedNetwork {
  network: DnsNetwork;
  cidrs: Cidr[];
}

/** Names are compared as DNS does, without regard to case, and without the root's trailing dot. */
export function normalName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

export class NameTables {
  readonly domain: string;
  private readonly networks = new Map<string, ServedNetwork>();
  private readonly contexts = new Map<string, DnsContext>();
  /** Per network: each name (bare and qualified) and the contexts that answer to it there. */
  private readonly names = new Map<string, Map<string, Set<string>>>();
  /** Every name of every network, with how many entries carry it: a name we hold is answered, never forwarded. */
  private readonly everyName = new Map<string, number>();
  /** Each context address (canonical text) and whose it is, on which network. */
  private readonly owners = new Map<string, { context: string; network: string }>();

  constructor(domain: string) {
    this.domain = normalName(domain);
  }

  apply(update: DnsUpdate): void {
    switch (update.kind) {
      case "network": {
        const known = this.contexts;
        // A network's subnets may change (an overlay's blocks): its contexts' entries are kept, re-indexed after.
        const members = [...known.values()].filter((c) =>
          c.attachments.some((a) => a.network === update.network.name),
        );
        for (const c of members) this.unindex(c);
        this.networks.set(update.network.name, {
          network: update.network,
          cidrs: update.network.subnets.map((s) => parseSubnet(s, "subnet")),
        });
        for (const c of members) this.index(c);
        return;
      }
      case "network-gone": {
        const members = [...this.contexts.values()].filter((c) =>
          c.attachments.some((a) => a.network === update.name),
        );
        for (const c of members) this.unindex(c);
        this.networks.delete(update.name);
        for (const c of members) this.index(c);
        return;
      }
      case "context": {
        const old = this.contexts.get(keyOf(update.context));
        if (old) this.unindex(old);
        this.contexts.set(keyOf(update.context), update.context);
        this.index(update.context);
        return;
      }
      case "context-gone": {
        const old = this.contexts.get(update.name);
        if (old) this.unindex(old);
        this.contexts.delete(update.name);
        return;
      }
    }
  }

  /** The networks served, for the listeners (server.ts). */
  servedNetworks(): DnsNetwork[] {
    return [...this.networks.values()].map((s) => s.network);
  }

  /**
   * The networks whose names `source` may see: a context's, all its served networks; another sender inside a served
   * subnet (the host on the gateway, a runtime's container), that network. Undefined: a sender we do not serve.
   */
  viewOf(source: string): ReadonlySet<string> | undefined {
    let ip: ReturnType<typeof parseIp>;
    try {
      ip = parseIp(source.startsWith("::ffff:") && source.includes(".") ? source.slice(7) : source, "source");
    } catch {
      return undefined;
    }
    const owner = this.owners.get(ip.text);
    if (owner) {
      const ctx = this.contexts.get(owner.context);
      const nets = new Set(
        (ctx?.attachments ?? []).map((a) => a.network).filter((n) => this.networks.has(n)),
      );
      if (nets.size > 0) return nets;
    }
    const inside = new Set<string>();
    for (const [name, served] of this.networks)
      if (served.cidrs.some((c) => cidrContains(c, ip.family, ip.addr))) inside.add(name);
    return inside.size > 0 ? inside : undefined;
  }

  lookup(qname: string, view: ReadonlySet<string>): NameAnswer {
    const name = normalName(qname);
    const v4 = new Set<string>();
    const v6 = new Set<string>();
    let found = false;
    for (const network of view) {
      const holders = this.names.get(network)?.get(name);
      if (!holders) continue;
      // NAME.NETWORK.DOMAIN names the context on that network; a bare name, wherever the sender shares it.
      const qualified = name.endsWith(`.${network}.${this.domain}`);
      for (const holder of holders) {
        found = true;
        for (const att of this.contexts.get(holder)?.attachments ?? []) {
          if (qualified ? att.network !== network : !view.has(att.network)) continue;
          for (const address of att.addresses) (address.includes(":") ? v6 : v4).add(address);
        }
      }
    }
    const owned =
      found ||
      this.everyName.has(name) ||
      name === this.domain ||
      name.endsWith(`.${this.domain}`) ||
      (name.length > 0 && !name.includes("."));
    return { owned, found, v4: [...v4], v6: [...v6] };
  }

  /** The PTR answer for an address (in-addr.arpa / ip6.arpa name already turned into the address). */
  reverse(address: string, view: ReadonlySet<string>): ReverseAnswer {
    let ip: ReturnType<typeof parseIp>;
    try {
      ip = parseIp(address, "address");
    } catch {
      return { owned: false, names: [] };
    }
    const owned = [...this.networks.values()].some((s) =>
      s.cidrs.some((c) => cidrContains(c, ip.family, ip.addr)),
    );
    const owner = this.owners.get(ip.text);
    if (!owner || !view.has(owner.network)) return { owned, names: [] };
    const name = this.contexts.get(owner.context)?.name ?? owner.context;
    return { owned: true, names: [`${name}.${owner.network}.${this.domain}`] };
  }

  /** The names a context answers to on a network: NAME, ALIAS, and each of them under NETWORK.DOMAIN. */
  private namesOf(ctx: DnsContext, network: string): string[] {
    const bare = [ctx.name, ...ctx.aliases].map(normalName);
    return [...bare, ...bare.map((n) => `${n}.${normalName(network)}.${this.domain}`)];
  }

  private index(ctx: DnsContext): void {
    for (const att of ctx.attachments) {
      if (!this.networks.has(att.network)) continue;
      let names = this.names.get(att.network);
      if (!names) {
        names = new Map();
        this.names.set(att.network, names);
      }
      for (const n of this.namesOf(ctx, att.network)) {
        let holders = names.get(n);
        if (!holders) {
          holders = new Set();
          names.set(n, holders);
        }
        if (holders.has(keyOf(ctx))) continue;
        holders.add(keyOf(ctx));
        this.everyName.set(n, (this.everyName.get(n) ?? 0) + 1);
      }
      for (const address of att.addresses)
        this.owners.set(canonical(address), { context: keyOf(ctx), network: att.network });
    }
  }

  private unindex(ctx: DnsContext): void {
    for (const att of ctx.attachments) {
      const names = this.names.get(att.network);
      for (const n of this.namesOf(ctx, att.network)) {
        const holders = names?.get(n);
        if (!holders?.delete(keyOf(ctx))) continue;
        if (holders.size === 0) names!.delete(n);
        const count = (this.everyName.get(n) ?? 1) - 1;
        if (count > 0) this.everyName.set(n, count);
        else this.everyName.delete(n);
      }
      if (names?.size === 0) this.names.delete(att.network);
      for (const address of att.addresses) {
        const key = canonical(address);
        if (this.owners.get(key)?.context === keyOf(ctx)) this.owners.delete(key);
      }
    }
  }
}

/** Where the tables keep a context: its key (a remote context's NAME@NODE), else its name. */
function keyOf(ctx: DnsContext): string {
  return ctx.key ?? ctx.name;
}

function canonical(address: string): string {
  try {
    return parseIp(address, "address").text;
  } catch {
    return address;
  }
}
