/**
 * `netctx apply FILE`: make the host match a declared scene. Creates what is missing, replaces contexts that differ,
 * leaves what matches alone, and with prune removes what is no longer declared. The whole file is checked before
 * any change; if a change fails half-way, what this apply made is removed again, so the host is as it was.
 */
import { z } from "zod";
import { conflict, invalid } from "../errors.ts";
import type { Host } from "../host.ts";
import { specOf } from "../levels/driver.ts";
import { checkName } from "../model/names.ts";
import type { ContextRecord, NetworkRecord } from "../model/records.ts";
import {
  type ContextInput,
  ContextInputSchema,
  type NetworkInput,
  NetworkInputSchema,
  parseInput,
} from "../model/schemas.ts";
import { parseIp, parseSubnet } from "../net/cidr.ts";
import { createContext, createContexts, removeContext } from "./contexts.ts";
import { createNetwork, removeNetwork } from "./networks.ts";

export const SceneSchema = z.strictObject({
  version: z.literal(1).optional(),
  networks: z.array(NetworkInputSchema).optional(),
  contexts: z.array(ContextInputSchema).optional(),
});
export type Scene = z.infer<typeof SceneSchema>;

export type Step =
  | { op: "create-network"; name: string; input: NetworkInput }
  | { op: "create-context"; name: string; input: ContextInput }
  | { op: "replace-context"; name: string; input: ContextInput; why: string }
  | { op: "remove-context"; name: string }
  | { op: "remove-network"; name: string };

/** Shape, names, addresses and references of the whole file, before anything is touched. */
export function parseScene(host: Host, raw: unknown): { networks: NetworkInput[]; contexts: ContextInput[] } {
  const scene = parseInput(SceneSchema, raw);
  const networks = scene.networks ?? [];
  const contexts = scene.contexts ?? [];
  const seen = new Set<string>();
  networks.forEach((n, i) => {
    const at = `networks[${i}]`;
    checkName(`${at}.name`, n.name, 32);
    if (seen.has(n.name)) throw conflict(`${at}.name`, `network "${n.name}" is declared twice`);
    seen.add(n.name);
    for (const [j, s] of n.subnets.entries()) parseSubnet(s, `${at}.subnets[${j}]`);
    for (const [j, g] of (n.gateways ?? []).entries()) parseIp(g, `${at}.gateways[${j}]`);
  });
  const names = new Set<string>();
  contexts.forEach((c, i) => {
    const at = `contexts[${i}]`;
    checkName(`${at}.name`, c.name);
    if (names.has(c.name)) throw conflict(`${at}.name`, `context "${c.name}" is declared twice`);
    names.add(c.name);
    c.networks.forEach((n, j) => {
      if (!seen.has(n) && !host.store.getNetwork(n))
        throw invalid(`${at}.networks[${j}]`, `network "${n}" is neither declared nor existing`);
    });
    for (const [j, ip] of (c.ips ?? []).entries()) parseIp(ip, `${at}.ips[${j}]`);
  });
  return { networks, contexts };
}

export function planScene(host: Host, raw: unknown, prune: boolean): Step[] {
  const scene = parseScene(host, raw);
  const steps: Step[] = [];
  const declaredNets = new Set(scene.networks.map((n) => n.name));
  const declaredCtxs = new Set(scene.contexts.map((c) => c.name));
  if (prune) {
    for (const c of host.store.listContexts())
      if (!declaredCtxs.has(c.name)) steps.push({ op: "remove-context", name: c.name });
  }
  scene.networks.forEach((n, i) => {
    const have = host.store.getNetwork(n.name);
    if (!have) steps.push({ op: "create-network", name: n.name, input: n });
    else {
      const diff = networkDifference(have, n);
      if (diff)
        throw conflict(
          `networks[${i}].${diff}`,
          `network "${n.name}" exists with another ${diff}; remove it first`,
        );
    }
  });
  for (const c of scene.contexts) {
    const have = host.store.getContext(c.name);
    if (!have) steps.push({ op: "create-context", name: c.name, input: c });
    else {
      const why = contextDifference(have, c);
      if (why) steps.push({ op: "replace-context", name: c.name, input: c, why });
    }
  }
  if (prune) {
    for (const n of host.store.listNetworks())
      if (!declaredNets.has(n.name)) steps.push({ op: "remove-network", name: n.name });
  }
  return steps;
}

function networkDifference(have: NetworkRecord, want: NetworkInput): string | undefined {
  if (have.driver !== want.driver) return "driver";
  const subnets = want.subnets.map((s) => parseSubnet(s, "subnets").text);
  if (JSON.stringify(have.subnets.map((s) => s.cidr)) !== JSON.stringify(subnets)) return "subnets";
  if (have.nat !== (want.nat ?? false)) return "nat";
  if (have.internal !== (want.internal ?? false)) return "internal";
  if (want.mtu !== undefined && have.mtu !== want.mtu) return "mtu";
  return undefined;
}

function contextDifference(have: ContextRecord, want: ContextInput): string | undefined {
  const spec = specOf(have);
  if (have.status !== "ready") return `it is ${have.status}`;
  if (have.level !== want.level) return "level";
  if (JSON.stringify(spec.attachments.map((a) => a.network)) !== JSON.stringify(want.networks))
    return "networks";
  const addresses = spec.attachments.flatMap((a) => a.addresses.map((x) => x.split("/")[0]!));
  const missing = (want.ips ?? []).find((ip) => !addresses.includes(parseIp(ip, "ips").text));
  if (missing) return `address ${missing}`;
  if (want.mac !== undefined && spec.attachments[0]?.mac !== want.mac.toLowerCase()) return "mac";
  if (JSON.stringify(spec.routes ?? []) !== JSON.stringify(want.routes ?? [])) return "routes";
  return undefined;
}

export interface ApplyOptions {
  prune?: boolean;
  progress?: (done: number, total: number, step: Step) => void;
}

/** Consecutive context creations go to the kernel together, this many at a time (see createContexts). */
const BATCH = 64;

/** Carry out the plan; on failure undo what this apply created, then rethrow. Removals cannot be undone. */
export function applyScene(host: Host, raw: unknown, opts: ApplyOptions = {}): Step[] {
  const steps = planScene(host, raw, opts.prune ?? false);
  const created: Step[] = [];
  let done = 0;
  const finished = (step: Step) => {
    if (step.op === "create-network" || step.op === "create-context") created.push(step);
    opts.progress?.(++done, steps.length, step);
  };
  try {
    for (let i = 0; i < steps.length; ) {
      const step = steps[i]!;
      if (step.op === "create-context") {
        const run = creationRun(steps, i);
        createContexts(
          host,
          run.map((s) => s.input),
        );
        for (const made of run) finished(made);
        i += run.length;
      } else {
        runStep(host, step);
        finished(step);
        i++;
      }
    }
  } catch (err) {
    for (const step of created.reverse()) {
      try {
        if (step.op === "create-context") removeContext(host, step.name);
        else removeNetwork(host, step.name);
      } catch {
        // keep undoing; gc finds whatever this leaves
      }
    }
    throw err;
  }
  // Removals left their anti-spoofing elements to one batch (host.defer): that batch is part of this apply.
  host.flushDeferred();
  return steps;
}

/** The create-context steps from `start` on (one at least), up to BATCH of them. */
function creationRun(steps: Step[], start: number): Extract<Step, { op: "create-context" }>[] {
  const run: Extract<Step, { op: "create-context" }>[] = [];
  for (let i = start; i < steps.length && run.length < BATCH; i++) {
    const step = steps[i]!;
    if (step.op !== "create-context") break;
    run.push(step);
  }
  return run;
}

/** Every step but context creation, which goes in batches (creationRun). */
function runStep(host: Host, step: Exclude<Step, { op: "create-context" }>): void {
  switch (step.op) {
    case "create-network":
      createNetwork(host, step.input);
      return;
    case "replace-context":
      removeContext(host, step.name);
      createContext(host, step.input);
      return;
    case "remove-context":
      removeContext(host, step.name);
      return;
    case "remove-network":
      removeNetwork(host, step.name);
  }
}

/** `netctx destroy FILE`: remove the declared contexts, then the declared networks; missing ones are fine. */
export function destroyScene(host: Host, raw: unknown): string[] {
  const scene = parseInput(SceneSchema, raw);
  const removed: string[] = [];
  for (const c of scene.contexts ?? []) if (removeContext(host, c.name)) removed.push(`context ${c.name}`);
  for (const n of scene.networks ?? []) {
    if (host.store.getNetwork(n.name)) {
      removeNetwork(host, n.name);
      removed.push(`network ${n.name}`);
    }
  }
  return removed;
}
