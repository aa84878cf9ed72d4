/** The host's upstream resolvers, as resolv.conf names them (`nameserver ADDR` lines; the rest is not ours). */
import { readFileSync } from "node:fs";
import { parseIp } from "../net/cidr.ts";

export function nameserversOf(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    try {
      out.push(parseIp(m[1]!, "nameserver").text);
    } catch {
      // A scoped link-local address (fe80::1%eth0) or a typo: glibc skips those too.
    }
  }
  return out;
}

/** The nameservers of the file at `path`; none when it cannot be read (then every forward gets SERVFAIL). */
export function readNameservers(path: string): string[] {
  try {
    return nameserversOf(readFileSync(path, "utf8"));
  } catch {
    return [];
  }
}

/** glibc reads at most three nameserver lines (MAXNS); more would be silently ignored. */
const MAX_NAMESERVERS = 3;

/** What a context's own resolv.conf says: its networks' DNS servers, its networks' domains first in the search. */
export interface ContextResolver {
  nameservers: string[];
  /** NETWORK.DOMAIN per network served, in the context's attachment order. */
  search: string[];
}

/**
 * The resolv.conf a context sees (`netctx exec`), in the shape podman writes for aardvark-dns: its network's gateway
 * as nameserver, the network's domain searched before the host's search domains, the host's `options` lines kept
 * (edns0, trust-ad, timeout: what the administrator chose still applies). The host's nameservers are not listed:
 * the gateway forwards to them, and a context could not reach a loopback one anyway.
 */
export function contextResolvConf(resolver: ContextResolver, hostText: string): string {
  const hostSearch: string[] = [];
  const options: string[] = [];
  for (const line of hostText.split("\n")) {
    const m = /^\s*(search|domain|options)\s+(.*\S)/.exec(line);
    if (!m) continue;
    if (m[1] === "options") options.push(m[2]!);
    // `domain` is the older single-domain form of `search`; the last of the two wins in glibc, both are kept here.
    else hostSearch.push(...m[2]!.split(/\s+/));
  }
  const search = [...new Set([...resolver.search, ...hostSearch])];
  return [
    "# netctx: this context's DNS server (the gateway of its network, served by `netctx serve`)",
    ...resolver.nameservers.slice(0, MAX_NAMESERVERS).map((a) => `nameserver ${a}`),
    ...(search.length > 0 ? [`search ${search.join(" ")}`] : []),
    ...options.map((o) => `options ${o}`),
    "",
  ].join("\n");
}
