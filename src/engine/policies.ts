/**
 * Policy lifecycle (issue 19): add, remove, list. A policy is a record; what it does to traffic comes from the tables
 * the engine writes after every change (policy-sync.ts), so adding one applies to existing contexts at once and to
 * contexts made later that it selects.
 */
import type { Host } from "../host.ts";
import { formatPort, PolicyInputSchema, type PolicyRecord, policyRecordOf } from "../model/policy.ts";
import { parseInput } from "../model/schemas.ts";
import { syncPolicyTables } from "./policy-sync.ts";

export interface PolicyOrigin {
  /** The apply scene that adds it. */
  scene?: string;
}

/** What `policy ls --json` and the API show: the record with its ports as written (`80/tcp`, `8000-8100/udp`). */
export interface PolicyView {
  name: string;
  to: string;
  from: string;
  ports: string[];
  egress: boolean;
  scene?: string;
  createdAt?: string;
}

export function policyView(p: PolicyRecord): PolicyView {
  return {
    name: p.name,
    to: p.to,
    from: p.from,
    ports: p.ports.map(formatPort),
    egress: p.egress,
    ...(p.scene !== undefined ? { scene: p.scene } : {}),
    ...(p.createdAt !== undefined ? { createdAt: p.createdAt } : {}),
  };
}

/** The record an input makes, with every check that needs no write (apply's rehearsal inserts it itself). */
export function checkedPolicy(raw: unknown, origin: PolicyOrigin = {}, at = ""): PolicyRecord {
  const record = policyRecordOf(parseInput(PolicyInputSchema, raw), at);
  if (origin.scene !== undefined) record.scene = origin.scene;
  return record;
}

/** Record the policy and write the tables; if the tables cannot be written, the record goes again. */
export function addPolicy(host: Host, raw: unknown, origin: PolicyOrigin = {}): PolicyRecord {
  const record = checkedPolicy(raw, origin);
  host.store.insertPolicy(record);
  try {
    syncPolicyTables(host, []);
  } catch (err) {
    host.store.deletePolicy(record.name);
    try {
      syncPolicyTables(host, []);
    } catch {
      // The first failure is the one to report.
    }
    throw err;
  }
  return host.store.getPolicy(record.name) ?? record;
}

/** Undefined when there is no such policy. */
export function removePolicy(host: Host, name: string): PolicyRecord | undefined {
  const found = host.store.getPolicy(name);
  if (!found) return undefined;
  host.store.deletePolicy(name);
  syncPolicyTables(host, []);
  return found;
}

/** A removed policy added again as it was (apply's undo). */
export function restorePolicy(host: Host, record: PolicyRecord): void {
  host.store.insertPolicy(record);
  syncPolicyTables(host, []);
}
