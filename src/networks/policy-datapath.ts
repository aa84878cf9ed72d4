/**
 * PLACEHOLDER for the policy data path (issue 19), which another branch builds: BPF maps and programs on veths and
 * cgroups behind this one function. Here it only keeps the last tables written, per Host, so the engine's wiring
 * compiles and runs; the lead drops this file at merge.
 */
import { type Host, hostSlot } from "../host.ts";
import type { PolicyTables } from "../model/policy-tables.ts";

const written = hostSlot((): { tables?: PolicyTables } => ({}));

export function writePolicyTables(host: Host, tables: PolicyTables): void {
  host.cache(written).tables = tables;
}
