/**
 * `netctx state export`: networks and contexts as the inputs that would make them again (the shapes of
 * NetworkInputSchema and ContextInputSchema), so a dump can be fed back through the engine or an apply file.
 * Addresses are exported as requested addresses: a restore gives every context the address it had.
 */
import { specOf } from "../levels/driver.ts";
import { levelDriver } from "../levels/registry.ts";
import { formatHostPort } from "../model/host-port.ts";
import { isReservedLabel } from "../model/labels.ts";
import {
  DEFAULT_DENY_OPTION,
  formatPort,
  ISOLATE_OPTION,
  type PolicyInput,
  type PolicyRecord,
} from "../model/policy.ts";
import type { ContextRecord, NetworkRecord } from "../model/records.ts";
import type { ContextInput, NetworkInput } from "../model/schemas.ts";
import type { StateStore } from "../state/state-store.ts";

export interface StateExport {
  version: 1;
  networks: NetworkInput[];
  contexts: ContextInput[];
  /** Present when there are policies: the export is an apply file, and apply takes them. */
  policies?: PolicyInput[];
}

export function exportState(store: StateStore): StateExport {
  const networks = store.listNetworks().map(networkInputOf);
  // Half-made or half-removed contexts are not part of the state anybody asked for.
  const contexts = store
    .listContexts()
    .filter((c) => c.status === "ready")
    .map(contextInputOf);
  const policies = store.listPolicies().map(policyInputOf);
  return { version: 1, networks, contexts, ...(policies.length ? { policies } : {}) };
}

/** The input that adds the policy again. */
export function policyInputOf(p: PolicyRecord): PolicyInput {
  return {
    name: p.name,
    to: p.to,
    from: p.from,
    ...(p.ports.length ? { ports: p.ports.map(formatPort) } : {}),
    ...(p.egress ? { egress: true } : {}),
  };
}

/** The input that makes the network again. */
export function networkInputOf(n: NetworkRecord): NetworkInput {
  const { antispoof, [ISOLATE_OPTION]: isolate, [DEFAULT_DENY_OPTION]: defaultDeny, ...options } = n.options;
  return {
    name: n.name,
    driver: n.driver,
    subnets: n.subnets.map((s) => s.cidr),
    gateways: n.subnets.flatMap((s) => (s.gateway ? [s.gateway] : [])),
    nat: n.nat,
    internal: n.internal,
    mtu: n.mtu,
    ...(typeof antispoof === "boolean" ? { antispoof } : {}),
    ...(isolate === true ? { isolate } : {}),
    ...(defaultDeny === true ? { defaultDeny } : {}),
    ...(Object.keys(options).length ? { options } : {}),
  };
}

/** The input that makes the context again with its addresses (and the first interface's MAC). */
export function contextInputOf(c: ContextRecord): ContextInput {
  const spec = specOf(c);
  const mac = spec.attachments[0]?.mac;
  // The user's labels; netctx's own marks (a scene, a CNI owner) belong to whoever makes the context again.
  const labels = Object.fromEntries(Object.entries(spec.labels ?? {}).filter(([k]) => !isReservedLabel(k)));
  return {
    name: c.name,
    level: c.level,
    networks: spec.attachments.map((a) => a.network),
    ips: spec.attachments.flatMap((a) => a.addresses.map((cidr) => cidr.split("/")[0]!)),
    ...(mac ? { mac } : {}),
    ...(levelDriver(c.level).sharedStack ? {} : { ifnames: spec.attachments.map((a) => a.ifname) }),
    ...(spec.routes?.length ? { routes: spec.routes } : {}),
    ...(Object.keys(labels).length ? { labels } : {}),
    ...(spec.allowHostPorts?.length ? { allowHostPorts: spec.allowHostPorts.map(formatHostPort) } : {}),
  };
}
