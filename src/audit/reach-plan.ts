/**
 * What the reach matrix probes and what each probe should find: every ordered pair of audited contexts, the host
 * (each context's gateway, as the `host` selector means it) both ways, and the world (an address outside every
 * network), on TCP and UDP at the ports the policies name plus one port no policy names. The expectation comes from
 * the compiled tables and the decision rule (model/policy-decide.ts), the same rule the data path enforces. Pure: no
 * kernel, no processes.
 */

import type { PolicyRecord } from "../model/policy.ts";
import { type PolicyDecider, type Proto, policyDecider } from "../model/policy-decide.ts";
import type { PolicyTables } from "../model/policy-tables.ts";
import type { NetworkRecord } from "../model/records.ts";

export interface ReachPort {
  proto: Proto;
  port: number;
}

/** One end of a probe: a context, the host (a gateway address of the other end's network) or the world. */
export interface ReachEnd {
  name: string;
  address: string;
  network?: NetworkRecord;
  /** The host is not on its path (NetworkDriver.hostDevice is undefined: macvlan). */
  offHost?: boolean;
}

export type Verdict = "allowed" | "blocked";

export interface PlannedCell {
  from: string;
  to: string;
  src: string;
  dst: string;
  proto: Proto;
  port: number;
  /** "n/a": the policies do not decide this cell alone (see notDecidedByPolicy). */
  expected: Verdict | "n/a";
  reason: string;
}

export const portText = (p: ReachPort) => `${p.proto}/${p.port}`;

/**
 * The ports to probe: each policy range's first and last port, and per protocol one port no policy names (the first
 * free from 7777), which shows what a selected context does with everything else.
 */
export function reachPorts(policies: readonly PolicyRecord[]): ReachPort[] {
  const named = new Map<string, ReachPort>();
  const add = (proto: Proto, port: number) => named.set(`${proto}/${port}`, { proto, port });
  const inRange = (proto: Proto, port: number) =>
    policies.some((p) =>
      p.ports.some((r) => r.proto === proto && port >= r.port && port <= (r.end ?? r.port)),
    );
  for (const p of policies)
    for (const r of p.ports) {
      add(r.proto, r.port);
      if (r.end !== undefined) add(r.proto, r.end);
    }
  for (const proto of ["tcp", "udp"] as const) {
    let port = 7777;
    while (inRange(proto, port)) port++;
    add(proto, port);
  }
  return [...named.values()].sort((a, b) =>
    a.proto !== b.proto ? (a.proto < b.proto ? -1 : 1) : a.port - b.port,
  );
}

/**
 * Cells whose outcome other rules decide before or besides the policies: an internal network's firewall (no
 * traffic between it and other networks, none to the world), and masquerade (a --nat network's context reaching
 * another network's l2 context arrives with the host's address as its source, which the destination's hook then
 * judges).
 */
function notDecidedByPolicy(from: ReachEnd, to: ReachEnd, toIsL2: boolean): string | undefined {
  const same = from.network !== undefined && from.network.name === to.network?.name;
  if (from.offHost || to.offHost) {
    if (to.name === "host" || from.name === "host" || to.name === "world")
      return "the host is not on the path of a context on its parent's segment (macvlan)";
    if (!same) return "through the segment's router, off the host (macvlan)";
  }
  if (to.name === "host" || from.name === "host") return undefined;
  if (same) return undefined;
  if (from.network?.internal || to.network?.internal) return "internal network";
  if (from.network?.nat && toIsL2 && to.name !== "world") return "source masqueraded (--nat)";
  return undefined;
}

export interface PlanInput {
  /** The audited contexts: name, IPv4 address, network, gateway, whether it has a netns of its own (l2). */
  contexts: readonly {
    name: string;
    address: string;
    network: NetworkRecord;
    gateway: string;
    l2: boolean;
    offHost?: boolean;
  }[];
  tables: PolicyTables;
  ports: readonly ReachPort[];
  /** The world's address, when the audit could make one answer. */
  world: string | undefined;
}

export function planReach({ contexts, tables, ports, world }: PlanInput): PlannedCell[] {
  const decider: PolicyDecider = policyDecider(tables);
  const cells: PlannedCell[] = [];
  const pair = (from: ReachEnd, to: ReachEnd, toIsL2: boolean) => {
    for (const p of ports) {
      const skip = notDecidedByPolicy(from, to, toIsL2);
      const d = skip ? undefined : decider.decide(from.address, to.address, p.proto, p.port);
      cells.push({
        from: from.name,
        to: to.name,
        src: from.address,
        dst: to.address,
        proto: p.proto,
        port: p.port,
        expected: d ? (d.allowed ? "allowed" : "blocked") : "n/a",
        reason: d?.reason ?? skip!,
      });
    }
  };
  const end = (c: PlanInput["contexts"][number]): ReachEnd => ({
    name: c.name,
    address: c.address,
    network: c.network,
    ...(c.offHost ? { offHost: true } : {}),
  });
  for (const s of contexts) {
    const from = end(s);
    for (const t of contexts) if (t !== s) pair(from, end(t), t.l2);
    const gateway: ReachEnd = { name: "host", address: s.gateway, network: s.network };
    pair(from, gateway, false);
    if (world !== undefined) pair(from, { name: "world", address: world }, false);
    pair(gateway, { ...from }, s.l2);
  }
  return cells;
}
