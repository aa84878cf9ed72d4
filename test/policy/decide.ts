/**
 * The decision rule of src/model/policy-tables.ts, written out for tests: what the data path must decide for a
 * packet given the tables. Connection tracking and the always-open traffic (ND, DNS/DHCP to a gateway, S = D) are
 * left out: the compiler's tests ask about new connections between different addresses.
 */
import type { AddressEntry, PolicyTables } from "../../src/model/policy-tables.ts";
import { cidrContains, parseCidr, parseIp } from "../../src/net/cidr.ts";

const NONE: AddressEntry = {
  cidr: "",
  ingressFrom: 0n,
  ingressTo: 0n,
  egressFrom: 0n,
  egressTo: 0n,
  ingressSelected: false,
  egressSelected: false,
  isolateGroup: 0,
  gateway: false,
};

/** The entry the longest-prefix match finds for `address`, or one with every field zero. */
export function lookup(tables: PolicyTables, address: string): AddressEntry {
  const ip = parseIp(address, "address");
  let best: { entry: AddressEntry; prefix: number } | undefined;
  for (const entry of tables.addresses) {
    const c = parseCidr(entry.cidr, "cidr");
    if (c.family === ip.family && cidrContains(c, ip.family, ip.addr) && (!best || c.prefix > best.prefix))
      best = { entry, prefix: c.prefix };
  }
  return best?.entry ?? NONE;
}

export function allowed(
  tables: PolicyTables,
  src: string,
  dst: string,
  proto: "tcp" | "udp" = "tcp",
  port = 80,
): boolean {
  const s = lookup(tables, src);
  const d = lookup(tables, dst);
  const ports = tables.anyPort | (tables.ports.find((p) => p.proto === proto && p.port === port)?.bits ?? 0n);
  if (s.isolateGroup !== 0 && s.isolateGroup === d.isolateGroup) return false;
  if (d.ingressSelected && (s.ingressFrom & d.ingressTo & ports) === 0n) return false;
  if (s.egressSelected && (s.egressFrom & d.egressTo & ports) === 0n) return false;
  return true;
}
