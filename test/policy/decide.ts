/**
 * The compiler's tests ask the decision rule through src/model/policy-decide.ts (the one the reach audit uses), with
 * a TCP port 80 flow unless they say otherwise.
 */
import { policyDecider } from "../../src/model/policy-decide.ts";
import type { AddressEntry, PolicyTables } from "../../src/model/policy-tables.ts";

export function lookup(tables: PolicyTables, address: string): AddressEntry {
  return policyDecider(tables).lookup(address);
}

export function allowed(
  tables: PolicyTables,
  src: string,
  dst: string,
  proto: "tcp" | "udp" = "tcp",
  port = 80,
): boolean {
  return policyDecider(tables).decide(src, dst, proto, port).allowed;
}
