/**
 * The decision rule of policy-tables.ts, evaluated in TypeScript: what the data path must decide for the first packet
 * of a TCP or UDP flow from one address to another, given the tables. The compiler's tests ask it about the tables
 * they compile, and `netctx audit --reach` takes its expectations from it, so both hold the data path to one rule.
 * Connection tracking is left out (a first packet belongs to no connection yet), and so are ICMP and Neighbour
 * Discovery: the callers ask about TCP and UDP ports.
 */
import { type Cidr, cidrContains, parseCidr, parseIp } from "../net/cidr.ts";
import { type AddressEntry, addressEntry, type PolicyTables } from "./policy-tables.ts";

export type Proto = "tcp" | "udp";

const NONE: AddressEntry = addressEntry("");

/** What the rule says about one flow, and which part of it said so (shown as the expectation's reason). */
export interface Decision {
  allowed: boolean;
  reason: string;
}

/** The tables with their CIDRs parsed once, for asking many questions of them. */
export interface PolicyDecider {
  /** The entry the longest-prefix match finds for `address`, or one with every field zero. */
  lookup(address: string): AddressEntry;
  decide(src: string, dst: string, proto: Proto, port: number): Decision;
}

/** DNS (TCP and UDP 53) and DHCP (UDP 67, 547) to a gateway stay open for selected contexts. */
function gatewayService(proto: Proto, port: number): boolean {
  return port === 53 || (proto === "udp" && (port === 67 || port === 547));
}

export function policyDecider(tables: PolicyTables): PolicyDecider {
  const entries: { entry: AddressEntry; cidr: Cidr }[] = tables.addresses.map((entry) => ({
    entry,
    cidr: parseCidr(entry.cidr, "cidr"),
  }));
  const lookup = (address: string): AddressEntry => {
    const ip = parseIp(address, "address");
    let best: { entry: AddressEntry; prefix: number } | undefined;
    for (const { entry, cidr } of entries)
      if (cidrContains(cidr, ip.family, ip.addr) && (!best || cidr.prefix > best.prefix))
        best = { entry, prefix: cidr.prefix };
    return best?.entry ?? NONE;
  };
  const decide = (src: string, dst: string, proto: Proto, port: number): Decision => {
    if (parseIp(src, "source").text === parseIp(dst, "destination").text)
      return { allowed: true, reason: "to itself" };
    const s = lookup(src);
    const d = lookup(dst);
    if (d.gateway && gatewayService(proto, port)) return { allowed: true, reason: "DNS/DHCP to a gateway" };
    const ports =
      tables.anyPort | (tables.ports.find((p) => p.proto === proto && p.port === port)?.bits ?? 0n);
    if (s.isolateGroup !== 0 && s.isolateGroup === d.isolateGroup)
      return { allowed: false, reason: "isolated network" };
    if (d.ingressSelected && (s.ingressFrom & d.ingressTo & ports) === 0n)
      return { allowed: false, reason: "destination selected, no ingress policy allows" };
    if (s.egressSelected && (s.egressFrom & d.egressTo & ports) === 0n)
      return { allowed: false, reason: "source selected, no egress policy allows" };
    const by = [d.ingressSelected ? "ingress policy" : "", s.egressSelected ? "egress policy" : ""]
      .filter(Boolean)
      .join(" and ");
    return { allowed: true, reason: by ? `allowed by ${by}` : "neither end selected" };
  };
  return { lookup, decide };
}
