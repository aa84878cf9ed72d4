/**
 * Keeps the data path's policy tables (networks/policy-datapath.ts) in step with the state: every change that can
 * change them (a context made, removed, connected or disconnected; a policy added or removed; a network made or
 * removed) ends here. It runs on every create, so it is kept cheap:
 * - without any policy and any `--isolate`/`--default-deny` network (one SQL query tells) nothing is compiled: the
 *   open tables are written once, and again only after tables that were not open;
 * - with them, the contexts' labels and addresses are kept per Host and only the contexts a change names are read
 *   again (by primary key), unless another process wrote to the store meanwhile (StateStore.foreignWrites): then
 *   all of them;
 * - policies and networks are read again only when their revision changed (StateStore.policyInputsRevision): parsing
 *   200 policy records cost more than the rest of a create's sync.
 */
import { type Host, hostSlot } from "../host.ts";
import { specOf } from "../levels/driver.ts";
import type { PolicyRecord } from "../model/policy.ts";
import { OPEN_TABLES, type PolicyTables } from "../model/policy-tables.ts";
import type { ContextRecord, NetworkRecord } from "../model/records.ts";
import { writePolicyTables } from "../networks/policy-datapath.ts";
import { policyDevices, policyUnenforceable } from "../networks/registry.ts";
import { compilePolicies, type PolicyContext, recompileContexts } from "./policy-compile.ts";

interface SyncState {
  /** The contexts as the compiler needs them; undefined while nothing is compiled (or they must be read again). */
  contexts: Map<string, PolicyContext> | undefined;
  /** StateStore.foreignWrites() when `contexts` was last brought up to date. */
  version: number | undefined;
  /** The last tables written were the open ones. */
  open: boolean;
  /** The last tables compiled, for the policies and networks of `revision`. */
  last: { revision: string; tables: PolicyTables } | undefined;
  /** Policies and networks as read under `revision`. */
  inputs: { revision: string; policies: PolicyRecord[]; networks: NetworkRecord[] } | undefined;
}

const SYNC = hostSlot(
  (): SyncState => ({
    contexts: undefined,
    version: undefined,
    open: false,
    last: undefined,
    inputs: undefined,
  }),
);

function policiesAndNetworks(
  host: Host,
  state: SyncState,
): { policies: PolicyRecord[]; networks: NetworkRecord[] } {
  const revision = host.store.policyInputsRevision();
  if (revision !== undefined && state.inputs !== undefined && state.inputs.revision === revision)
    return state.inputs;
  const inputs = {
    revision: revision ?? "",
    policies: host.store.listPolicies(),
    networks: host.store.listNetworks(),
  };
  state.inputs = revision === undefined ? undefined : inputs;
  return inputs;
}

export function policyContextOf(record: ContextRecord): PolicyContext {
  const spec = specOf(record);
  return {
    name: record.name,
    labels: spec.labels ?? {},
    attachments: spec.attachments.map((a) => ({ network: a.network, addresses: a.addresses })),
  };
}

/**
 * A context a change touched: its name (its record is read again), its record as the caller holds it (no read), or
 * its removal.
 */
export type Touched = string | ContextRecord | { removed: string };

const touchedName = (t: Touched): string => (typeof t === "string" ? t : "removed" in t ? t.removed : t.name);

/**
 * Compile and write the tables after a change. `touched`: the contexts the change made, changed or removed (none for
 * a policy or network change); "all" when the caller cannot tell.
 */
export function syncPolicyTables(host: Host, touched: readonly Touched[] | "all"): void {
  const state = host.cache(SYNC);
  if (!host.store.policyActive()) {
    state.contexts = undefined;
    state.last = undefined;
    if (!state.open) writePolicyTables(host, OPEN_TABLES);
    state.open = true;
    return;
  }
  // Read before the records: a write by another process between the two then shows as a new version next time.
  const version = host.store.foreignWrites();
  // The contexts whose entries alone are compiled again, or undefined: compile everything.
  let changed: Set<string> | undefined;
  let contexts = state.contexts;
  if (contexts === undefined || touched === "all" || version !== state.version) {
    contexts = new Map(host.store.listContexts().map((c) => [c.name, policyContextOf(c)]));
    state.contexts = contexts;
  } else {
    changed = new Set(touched.map(touchedName));
    for (const t of touched) {
      if (typeof t !== "string") {
        if ("removed" in t) contexts.delete(t.removed);
        else contexts.set(t.name, policyContextOf(t));
        continue;
      }
      const record = host.store.getContext(t);
      if (record) contexts.set(t, policyContextOf(record));
      else contexts.delete(t);
    }
  }
  state.version = version;
  const { policies, networks } = policiesAndNetworks(host, state);
  const input = {
    policies,
    contexts: [...contexts.values()],
    networks,
    unenforceable: policyUnenforceable(networks),
  };
  // Only the touched contexts' entries are compiled again while the policies and networks stay those of the last
  // tables: at 100 contexts and 200 policies the whole compile was half of a create's sync.
  const last = state.last;
  // Forgotten until these tables are compiled: a refusal half-way leaves nothing to build the next ones on.
  state.last = undefined;
  const tables =
    (changed !== undefined &&
      last !== undefined &&
      last.revision === state.inputs?.revision &&
      recompileContexts(last.tables, input, changed)) ||
    compilePolicies(input);
  state.last = state.inputs === undefined ? undefined : { revision: state.inputs.revision, tables };
  state.open = false;
  writePolicyTables(host, tables, policyDevices(networks));
}
