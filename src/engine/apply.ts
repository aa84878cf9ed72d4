/**
 * `netctx apply FILE`: make the host match a declared scene. Creates what is missing, replaces what this scene made
 * and the file now declares otherwise, leaves what matches alone, and with prune removes what this scene made and the
 * file no longer declares. A scene is named (`name:` in the file, or the file's absolute path) and every context and
 * network an apply makes carries that name (SCENE_LABEL, NetworkRecord.scene): prune never touches what was made by
 * hand or by another scene, and apply never takes such an object over (one identical to the file is left as it is;
 * one that differs is refused).
 *
 * The plan is rehearsed before any change: every step's state-side work (the same checks, records and leases the
 * real creation and removal make) runs in one state transaction that is then rolled back, with no kernel write. A
 * dry run is that rehearsal; a real apply runs it first, so anything it refuses is refused before anything changes.
 * If the kernel fails half-way, the apply undoes its steps in reverse: what it made is removed, what it removed is
 * made again from its record (addresses and first MAC kept).
 */
import { z } from "zod";
import { conflict, invalid, NetctxError, notFound } from "../errors.ts";
import type { Host } from "../host.ts";
import { specOf } from "../levels/driver.ts";
import { formatHostPort, parseHostPorts } from "../model/host-port.ts";
import { checkUserLabels, isReservedLabel } from "../model/labels.ts";
import { checkName } from "../model/names.ts";
import { networkSwitches, PolicyInputSchema, type PolicyRecord } from "../model/policy.ts";
import { formatPublish } from "../model/publish.ts";
import { type ContextRecord, type NetworkRecord, SCENE_LABEL, SceneNameSchema } from "../model/records.ts";
import {
  type ContextInput,
  ContextInputSchema,
  type NetworkInput,
  NetworkInputSchema,
  parseInput,
} from "../model/schemas.ts";
import { parseIp, parseSubnet } from "../net/cidr.ts";
import { networkDriver } from "../networks/registry.ts";
import { BlockNeeded } from "../state/ipam.ts";
import {
  contextRehearsal,
  createContext,
  createContexts,
  rehearseRemoval,
  removeContext,
} from "./contexts.ts";
import { checkedNetwork, createNetwork, removeNetwork } from "./networks.ts";
import { checkedPolicy, removePolicy, restorePolicy } from "./policies.ts";
import { syncPolicyTables } from "./policy-sync.ts";
import { contextInputOf, networkInputOf } from "./state-export.ts";

export const SceneSchema = z.strictObject({
  version: z.literal(1).optional(),
  /** The scene's name; without it, the file's absolute path names the scene. */
  name: SceneNameSchema.optional(),
  networks: z.array(NetworkInputSchema).optional(),
  contexts: z.array(ContextInputSchema).optional(),
  /** Policies (issue 19): `{name, to, from, ports, egress}` each, as `netctx policy add` takes them. */
  policies: z.array(PolicyInputSchema).optional(),
});
export type Scene = z.infer<typeof SceneSchema>;

/** `at`: where in the file the step comes from, for its errors ("contexts[2]"); `why`: what the plan prints. */
export type Step =
  | { op: "create-network"; name: string; input: NetworkInput; at: string }
  | { op: "replace-network"; name: string; input: NetworkInput; at: string; why: string }
  | { op: "create-context"; name: string; input: ContextInput; at: string }
  | { op: "replace-context"; name: string; input: ContextInput; at: string; why: string }
  | { op: "relabel-context"; name: string; labels: Record<string, string>; at: string }
  | { op: "create-policy"; name: string; record: PolicyRecord; at: string }
  | { op: "replace-policy"; name: string; record: PolicyRecord; at: string; why: string }
  | { op: "remove-context"; name: string; why: string }
  | { op: "remove-policy"; name: string; why: string }
  | { op: "remove-network"; name: string; why: string };

export interface Plan {
  scene: string;
  steps: Step[];
  /** Objects the file declares that exist but are not this scene's: used as they are, never changed or pruned. */
  notes: string[];
}

export interface ParsedScene {
  name: string;
  networks: NetworkInput[];
  contexts: ContextInput[];
  /** Checked records, without their scene yet. */
  policies: PolicyRecord[];
}

/**
 * Shape, names, addresses and references of the whole file, before anything is touched. `source`: the file's
 * absolute path, the scene's name when the file gives none.
 */
export function parseScene(host: Host, raw: unknown, source?: string): ParsedScene {
  const scene = parseInput(SceneSchema, raw);
  const networks = scene.networks ?? [];
  const contexts = scene.contexts ?? [];
  const seen = new Set<string>();
  networks.forEach((n, i) => {
    const at = `networks[${i}]`;
    // A bound on what the file may hold; the limit itself (NAME_MAX) is the create's, which names it.
    checkName(`${at}.name`, n.name, 32);
    if (seen.has(n.name)) throw conflict(`${at}.name`, `network "${n.name}" is declared twice`);
    seen.add(n.name);
    if (clusterScoped(n.driver))
      throw invalid(
        `${at}.driver`,
        `network "${n.name}": overlay networks are made with \`netctx network create ${n.name} --driver overlay\` (they live in etcd, for every host): an apply file only puts contexts on them`,
      );
    for (const [j, s] of n.subnets.entries()) parseSubnet(s, `${at}.subnets[${j}]`);
    for (const [j, g] of (n.gateways ?? []).entries()) parseIp(g, `${at}.gateways[${j}]`);
  });
  const names = new Set<string>();
  contexts.forEach((c, i) => {
    const at = `contexts[${i}]`;
    checkName(`${at}.name`, c.name, 64);
    if (names.has(c.name)) throw conflict(`${at}.name`, `context "${c.name}" is declared twice`);
    names.add(c.name);
    c.networks.forEach((n, j) => {
      if (!seen.has(n) && !host.store.getNetwork(n))
        throw invalid(`${at}.networks[${j}]`, `network "${n}" is neither declared nor existing`);
    });
    for (const [j, ip] of (c.ips ?? []).entries()) parseIp(ip, `${at}.ips[${j}]`);
    if (c.labels?.[SCENE_LABEL] !== undefined)
      throw invalid(
        `${at}.labels`,
        `"${SCENE_LABEL}" is apply's own label: it names the scene that made a context`,
      );
    if (c.labels) checkUserLabels(`${at}.labels`, c.labels);
  });
  const policyNames = new Set<string>();
  const policies = (scene.policies ?? []).map((p, i) => {
    const at = `policies[${i}]`;
    const record = checkedPolicy(p, {}, `${at}.`);
    if (policyNames.has(record.name))
      throw conflict(`${at}.name`, `policy "${record.name}" is declared twice`);
    policyNames.add(record.name);
    return record;
  });
  const name = scene.name ?? source;
  if (name === undefined)
    throw invalid(
      "name",
      "a scene needs a name: name: in the file (the CLI takes the file's path otherwise)",
    );
  return { name, networks, contexts, policies };
}

/** Whether a driver makes networks that span hosts (overlay): those are not an apply's to make. */
function clusterScoped(driver: string): boolean {
  try {
    return networkDriver(driver).scope === "cluster";
  } catch {
    return false;
  }
}

export interface PlanOptions {
  prune?: boolean;
  /** The scene file's absolute path: the scene's name when the file has no `name:`. */
  source?: string;
}

const sceneOf = (c: ContextRecord): string | undefined => specOf(c).labels?.[SCENE_LABEL];
const uses = (c: ContextRecord, network: string): boolean =>
  specOf(c).attachments.some((a) => a.network === network);

function madeBy(scene: string | undefined, me: string): string {
  if (scene === undefined) return "made by hand";
  return scene === me ? "made by this scene" : `made by scene "${scene}"`;
}

/** `"web" (made by hand), "db" (made by scene "x")`, at most 10. */
function holders(list: readonly ContextRecord[], me: string, declared: ReadonlySet<string>): string {
  const shown = list.slice(0, 10).map((c) => {
    const scene = sceneOf(c);
    const extra = scene === me && !declared.has(c.name) ? ", not in the file: --prune removes it" : "";
    return `"${c.name}" (${madeBy(scene, me)}${extra})`;
  });
  if (list.length > 10) shown.push(`and ${list.length - 10} more`);
  return shown.join(", ");
}

/**
 * What apply would do, in order: removals first (pruned contexts, and the contexts of networks that are replaced),
 * then networks, then contexts, then pruned networks. Refuses objects not this scene's that differ from the file,
 * and a network change or a prune that would pull a network from under a context the plan does not remove.
 */
export function planScene(host: Host, raw: unknown, opts: PlanOptions = {}): Plan {
  const scene = parseScene(host, raw, opts.source);
  const me = scene.name;
  const notes: string[] = [];
  const declaredNets = new Set(scene.networks.map((n) => n.name));
  const declaredCtxs = new Set(scene.contexts.map((c) => c.name));
  const existing = host.store.listContexts();
  /** Contexts the plan removes before networks change (pruned, or on a network that is replaced). */
  const removed = new Set<string>();
  const early: Step[] = [];
  if (opts.prune) {
    for (const c of existing)
      if (sceneOf(c) === me && !declaredCtxs.has(c.name)) {
        early.push({ op: "remove-context", name: c.name, why: "no longer in the file" });
        removed.add(c.name);
      }
  }

  const networkSteps: Step[] = [];
  scene.networks.forEach((n, i) => {
    const at = `networks[${i}]`;
    const have = host.store.getNetwork(n.name);
    if (!have) {
      networkSteps.push({ op: "create-network", name: n.name, input: n, at });
      return;
    }
    const diff = networkDifference(have, n);
    if (have.scene !== me) {
      if (diff)
        throw conflict(
          `${at}.name`,
          `network "${n.name}" exists, ${madeBy(have.scene, me)}, with another ${diff}: apply does not take over what it did not make; remove it (netctx network rm ${n.name}) or rename it in the file`,
        );
      notes.push(
        `network ${n.name} exists, ${madeBy(have.scene, me)}: used as it is, never pruned by this scene`,
      );
      return;
    }
    if (!diff) return;
    // Replaced: only when every context on it is one this apply removes or makes again itself.
    const users = existing.filter((c) => uses(c, n.name));
    const stuck = users.filter(
      (c) => !(sceneOf(c) === me && (declaredCtxs.has(c.name) || removed.has(c.name))),
    );
    if (stuck.length > 0)
      throw conflict(
        `${at}.${diff}`,
        `network "${n.name}" exists with another ${diff} and cannot be replaced while ${holders(stuck, me, declaredCtxs)} ${stuck.length === 1 ? "uses" : "use"} it: remove ${stuck.length === 1 ? "it" : "them"} (netctx rm ${stuck.map((c) => c.name).join(" ")}) or move ${stuck.length === 1 ? "it" : "them"} to another network, then apply again`,
      );
    for (const c of users)
      if (!removed.has(c.name)) {
        early.push({ op: "remove-context", name: c.name, why: `network ${n.name} is replaced` });
        removed.add(c.name);
      }
    networkSteps.push({ op: "replace-network", name: n.name, input: n, at, why: diff });
  });

  const contextSteps: Step[] = [];
  scene.contexts.forEach((c, i) => {
    const at = `contexts[${i}]`;
    const input: ContextInput = { ...c, labels: { ...c.labels, [SCENE_LABEL]: me } };
    const have = removed.has(c.name) ? undefined : existing.find((x) => x.name === c.name);
    if (!have) {
      contextSteps.push({ op: "create-context", name: c.name, input, at });
      return;
    }
    const why = contextDifference(have, c);
    const owner = sceneOf(have);
    if (owner !== me) {
      if (why)
        throw conflict(
          `${at}.name`,
          `context "${c.name}" exists, ${madeBy(owner, me)}, and differs from the file (${why}): apply does not take over what it did not make; remove it (netctx rm ${c.name}) or rename it in the file`,
        );
      notes.push(`context ${c.name} exists, ${madeBy(owner, me)}: left as it is, never pruned by this scene`);
      return;
    }
    if (why) contextSteps.push({ op: "replace-context", name: c.name, input, at, why });
    else if (labelsDiffer(have, c))
      contextSteps.push({ op: "relabel-context", name: c.name, labels: input.labels ?? {}, at });
  });

  // Policies before contexts: a context the plan makes is never open for a moment its policies close.
  const policySteps: Step[] = [];
  const declaredPolicies = new Set(scene.policies.map((p) => p.name));
  scene.policies.forEach((p, i) => {
    const at = `policies[${i}]`;
    const record: PolicyRecord = { ...p, scene: me };
    const have = host.store.getPolicy(p.name);
    if (!have) {
      policySteps.push({ op: "create-policy", name: p.name, record, at });
      return;
    }
    const why = policyDifference(have, p);
    if (have.scene !== me) {
      if (why)
        throw conflict(
          `${at}.name`,
          `policy "${p.name}" exists, ${madeBy(have.scene, me)}, with another ${why}: apply does not take over what it did not make; remove it (netctx policy rm ${p.name}) or rename it in the file`,
        );
      notes.push(
        `policy ${p.name} exists, ${madeBy(have.scene, me)}: used as it is, never pruned by this scene`,
      );
      return;
    }
    if (why) policySteps.push({ op: "replace-policy", name: p.name, record, at, why });
  });
  if (opts.prune)
    for (const p of host.store.listPolicies())
      if (p.scene === me && !declaredPolicies.has(p.name))
        early.push({ op: "remove-policy", name: p.name, why: "no longer in the file" });

  const late: Step[] = [];
  if (opts.prune) {
    for (const n of host.store.listNetworks()) {
      if (n.scene !== me || declaredNets.has(n.name)) continue;
      const stay = [
        ...scene.contexts.filter((c) => c.networks.includes(n.name)).map((c) => c.name),
        ...existing
          .filter((c) => !declaredCtxs.has(c.name) && !removed.has(c.name) && uses(c, n.name))
          .map((c) => c.name),
      ];
      if (stay.length > 0)
        throw conflict(
          "prune",
          `network "${n.name}" is no longer in the file but ${stay
            .slice(0, 10)
            .map((c) => `"${c}"`)
            .join(", ")} would still use it: declare it again, or remove or move those contexts first`,
        );
      late.push({ op: "remove-network", name: n.name, why: "no longer in the file" });
    }
  }
  return { scene: me, steps: [...early, ...networkSteps, ...policySteps, ...contextSteps, ...late], notes };
}

/**
 * Run the plan's state-side work (every check and record write the real steps make, none of their kernel work) in
 * one state transaction, and roll it back. Throws what the real apply would refuse, located in the file.
 */
export function rehearsePlan(host: Host, plan: Plan): void {
  const done = new Error("rehearsal done");
  let current: Step | undefined;
  const freedPaths = new Set<string>();
  try {
    host.store.transaction(() => {
      let check: ((raw: unknown) => void) | undefined;
      const create = (input: ContextInput) => {
        check ??= contextRehearsal(host, freedPaths);
        check(input);
      };
      const remove = (name: string) => {
        const spec = host.store.getContext(name)?.spec;
        rehearseRemoval(host, name);
        if (spec?.netns && !spec.netnsExternal) freedPaths.add(spec.netns);
        if (spec?.cgroup) freedPaths.add(spec.cgroup);
      };
      for (const step of plan.steps) {
        current = step;
        switch (step.op) {
          case "remove-context":
            remove(step.name);
            break;
          case "replace-context":
            remove(step.name);
            create(step.input);
            break;
          case "create-context":
            create(step.input);
            break;
          case "replace-network":
            host.store.deleteNetwork(step.name);
            host.store.insertNetwork(checkedNetwork(host, step.input, { scene: plan.scene }));
            break;
          case "create-network":
            host.store.insertNetwork(checkedNetwork(host, step.input, { scene: plan.scene }));
            break;
          case "remove-network":
            host.store.deleteNetwork(step.name);
            break;
          case "relabel-context":
            relabel(host, step.name, step.labels);
            break;
          case "create-policy":
            host.store.insertPolicy(step.record);
            break;
          case "replace-policy":
            host.store.deletePolicy(step.name);
            host.store.insertPolicy(step.record);
            break;
          case "remove-policy":
            host.store.deletePolicy(step.name);
        }
      }
      throw done;
    });
  } catch (err) {
    if (err === done) return;
    throw located(err, current);
  }
}

/** An error of a declared object's step names where it is in the file: "contexts[2]: route: ...". */
function located(err: unknown, step: Step | undefined): unknown {
  // The engine leases a block for it and runs the apply again (engine/apply-run.ts): it must stay what it is.
  if (err instanceof BlockNeeded) return err;
  if (!(err instanceof NetctxError) || step === undefined || !("at" in step)) return err;
  return new NetctxError(err.code, `${step.at}: ${err.message}`, `${step.at}.${err.field ?? step.name}`);
}

function networkDifference(have: NetworkRecord, want: NetworkInput): string | undefined {
  if (have.driver !== want.driver) return "driver";
  const subnets = want.subnets.map((s) => parseSubnet(s, "subnets").text);
  if (JSON.stringify(have.subnets.map((s) => s.cidr)) !== JSON.stringify(subnets)) return "subnets";
  if (have.nat !== (want.nat ?? false)) return "nat";
  if (have.internal !== (want.internal ?? false)) return "internal";
  if (want.mtu !== undefined && have.mtu !== want.mtu) return "mtu";
  const switches = networkSwitches(have.options);
  if (switches.isolate !== (want.isolate ?? false)) return "isolate";
  if (switches.defaultDeny !== (want.defaultDeny ?? false)) return "defaultDeny";
  return undefined;
}

function policyDifference(have: PolicyRecord, want: PolicyRecord): string | undefined {
  if (have.to !== want.to) return "to";
  if (have.from !== want.from) return "from";
  if (have.egress !== want.egress) return "egress";
  if (JSON.stringify(have.ports) !== JSON.stringify(want.ports)) return "ports";
  return undefined;
}

/** The user's labels (netctx's own marks aside) differ: they change in place, the context stays. */
function labelsDiffer(have: ContextRecord, want: ContextInput): boolean {
  const mine = Object.entries(specOf(have).labels ?? {}).filter(([k]) => !isReservedLabel(k));
  const wanted = Object.entries(want.labels ?? {});
  return JSON.stringify(mine.sort()) !== JSON.stringify(wanted.sort());
}

/**
 * Give a context the user labels `labels` (netctx's marks kept); returns the labels it had, for an undo. In the
 * caller's transaction when there is one; writes no tables.
 */
function relabel(host: Host, name: string, labels: Record<string, string>): Record<string, string> {
  const record = host.store.getContext(name);
  if (!record) throw notFound("context", name);
  const before = { ...(specOf(record).labels ?? {}) };
  const marks = Object.fromEntries(Object.entries(before).filter(([k]) => isReservedLabel(k)));
  const next = { ...labels, ...marks };
  record.spec = { ...record.spec, labels: next };
  host.store.updateContext(record);
  return before;
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
  const hostPorts = (ports: string[]) => JSON.stringify(ports.sort());
  if (
    hostPorts((spec.allowHostPorts ?? []).map(formatHostPort)) !==
    hostPorts(parseHostPorts(want.allowHostPorts ?? []).map(formatHostPort))
  )
    return "allowHostPorts";
  return undefined;
}

export interface ApplyOptions extends PlanOptions {
  /** Called once the plan passed its rehearsal, before the first change (the CLI prints the removals). */
  planned?: (plan: Plan) => void;
  progress?: (done: number, total: number, step: Step) => void;
}

/** Consecutive context creations go to the kernel together, this many at a time (see createContexts). */
const BATCH = 64;

/**
 * Plan, rehearse, then carry out the plan; on failure undo what this apply did, in reverse, and rethrow: what it
 * made goes, what it removed is made again from its record.
 */
export function applyScene(host: Host, raw: unknown, opts: ApplyOptions = {}): Plan {
  return carryOut(host, planScene(host, raw, opts), opts);
}

/**
 * `netctx destroy FILE`: remove every context and network this scene made, and nothing else. An object the file
 * declares that was made by hand or by another scene stays (a note says so), as prune leaves it. The plan is that of
 * an apply --prune of the same scene with nothing declared, so it is rehearsed and undone alike.
 */
export function planDestroy(host: Host, raw: unknown, opts: PlanOptions = {}): Plan {
  const scene = parseScene(host, raw, opts.source);
  const empty = { networks: [], contexts: [], policies: [] };
  const plan = planScene(host, empty, { prune: true, source: scene.name });
  const notes: string[] = [];
  for (const n of scene.networks) {
    const have = host.store.getNetwork(n.name);
    if (have && have.scene !== scene.name)
      notes.push(`network ${n.name} exists, ${madeBy(have.scene, scene.name)}: left as it is`);
  }
  for (const c of scene.contexts) {
    const have = host.store.getContext(c.name);
    if (have && sceneOf(have) !== scene.name)
      notes.push(`context ${c.name} exists, ${madeBy(sceneOf(have), scene.name)}: left as it is`);
  }
  for (const p of scene.policies) {
    const have = host.store.getPolicy(p.name);
    if (have && have.scene !== scene.name)
      notes.push(`policy ${p.name} exists, ${madeBy(have.scene, scene.name)}: left as it is`);
  }
  const steps = plan.steps.map((s) => ("why" in s ? { ...s, why: "the scene is destroyed" } : s));
  return { scene: scene.name, steps, notes };
}

export function destroyScene(host: Host, raw: unknown, opts: ApplyOptions = {}): Plan {
  return carryOut(host, planDestroy(host, raw, opts), opts);
}

function carryOut(host: Host, plan: Plan, opts: ApplyOptions): Plan {
  rehearsePlan(host, plan);
  opts.planned?.(plan);
  const { steps } = plan;
  const undo: (() => void)[] = [];
  let done = 0;
  const finished = (step: Step) => opts.progress?.(++done, steps.length, step);
  try {
    for (let i = 0; i < steps.length; ) {
      const step = steps[i]!;
      if (step.op === "create-context") {
        const run = creationRun(steps, i);
        createContexts(
          host,
          run.map((s) => s.input),
        );
        for (const made of run) {
          undo.push(() => removeContext(host, made.name));
          finished(made);
        }
        i += run.length;
      } else {
        runStep(host, plan.scene, step, undo);
        finished(step);
        i++;
      }
    }
  } catch (err) {
    for (const action of undo.reverse()) {
      try {
        action();
      } catch {
        // keep undoing; gc finds whatever this leaves
      }
    }
    throw err;
  }
  // Removals left their anti-spoofing elements to one batch (host.defer): that batch is part of this apply.
  host.flushDeferred();
  return plan;
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

/** A removed context as the input that makes it again: addresses, first MAC, labels, ports, limits, netns. */
function restorable(record: ContextRecord): ContextInput {
  const spec = specOf(record);
  return {
    ...contextInputOf(record),
    ...(spec.labels ? { labels: spec.labels } : {}),
    ...(spec.publish?.length ? { publish: spec.publish.map(formatPublish) } : {}),
    ...(spec.bandwidth ? { bandwidth: spec.bandwidth } : {}),
    ...(spec.netnsExternal && spec.netns ? { netns: spec.netns } : {}),
  };
}

/** Remove a context, leaving on `undo` how to make it again. */
function removeUndoably(host: Host, name: string, undo: (() => void)[]): void {
  const record = host.store.getContext(name);
  removeContext(host, name);
  if (record?.status === "ready") undo.push(() => createContext(host, restorable(record)));
}

function removeNetworkUndoably(host: Host, name: string, undo: (() => void)[]): void {
  const record: NetworkRecord = removeNetwork(host, name);
  undo.push(() =>
    createNetwork(host, networkInputOf(record), record.scene === undefined ? {} : { scene: record.scene }),
  );
}

/** Every step but context creation, which goes in batches (creationRun). */
function runStep(
  host: Host,
  scene: string,
  step: Exclude<Step, { op: "create-context" }>,
  undo: (() => void)[],
): void {
  switch (step.op) {
    case "create-network":
      createNetwork(host, step.input, { scene });
      undo.push(() => removeNetwork(host, step.name));
      return;
    case "replace-network":
      removeNetworkUndoably(host, step.name, undo);
      createNetwork(host, step.input, { scene });
      undo.push(() => removeNetwork(host, step.name));
      return;
    case "replace-context":
      removeUndoably(host, step.name, undo);
      createContext(host, step.input);
      undo.push(() => removeContext(host, step.name));
      return;
    case "remove-context":
      removeUndoably(host, step.name, undo);
      return;
    case "remove-network":
      removeNetworkUndoably(host, step.name, undo);
      return;
    case "relabel-context": {
      const before = relabel(host, step.name, step.labels);
      syncPolicyTables(host, [step.name]);
      undo.push(() => {
        const record = host.store.getContext(step.name);
        if (!record) return;
        record.spec = { ...record.spec, labels: before };
        host.store.updateContext(record);
        syncPolicyTables(host, [step.name]);
      });
      return;
    }
    case "create-policy":
      restorePolicy(host, step.record);
      undo.push(() => removePolicy(host, step.name));
      return;
    case "replace-policy":
      removePolicyUndoably(host, step.name, undo);
      restorePolicy(host, step.record);
      undo.push(() => removePolicy(host, step.name));
      return;
    case "remove-policy":
      removePolicyUndoably(host, step.name, undo);
  }
}

function removePolicyUndoably(host: Host, name: string, undo: (() => void)[]): void {
  const record = removePolicy(host, name);
  if (record) undo.push(() => restorePolicy(host, record));
}
