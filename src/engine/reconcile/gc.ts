/**
 * gc, repair and CNI CHECK: one reconcile of the records' declarations (declare.ts) against the kernel (observe.ts),
 * in the loop's written order (loop.ts).
 *
 * The kernel is observed before the store is read: a record always exists before its kernel objects (and outlives
 * them on removal), so an object a concurrent create makes after the observation is never taken for an orphan.
 * Devices of networks are made again first, in a pass of their own that removes nothing, so the observation
 * after it sees them with what their driver put on them.
 */
import type { Host } from "../../host.ts";
import type { ObjectKind, Present } from "../../networks/ownership.ts";
import { networkDriver } from "../../networks/registry.ts";
import { declareAll } from "./declare.ts";
import { reconcileFirewall } from "./firewall-step.ts";
import { type Act, KIND_ORDER, reconcile, recordingAct } from "./loop.ts";
import { observe } from "./observe.ts";
import { settleRecords } from "./records.ts";

export interface GcAction {
  action: string;
  object: string;
  reason: string;
  /** Set when the action was tried and failed; gc goes on with the rest. */
  error?: string;
}

export interface GcReport {
  dryRun: boolean;
  actions: GcAction[];
  /** Records another live process is working on: left alone. */
  busy: string[];
}

export function gc(host: Host, opts: { dryRun?: boolean } = {}): GcReport {
  const report: GcReport = { dryRun: opts.dryRun ?? false, actions: [], busy: [] };
  const act = recordingAct(report);
  settleRecords(host, act, report.busy);
  converge(host, act, report.dryRun, { removals: true });
  return report;
}

/**
 * Put back what the records declare and the kernel lost (after `nft flush ruleset`, `ip link del` of a network's
 * device): our nft tables with every element, guard and published port, and missing devices, addresses and routes.
 * Removes only firewall elements no record owns; other tables are untouched.
 */
export function repair(host: Host): { rebuild: boolean; remove: string[]; add: string[] } {
  const diff = { rebuild: false, remove: [] as string[], add: [] as string[] };
  const act: Act = (action, object, _reason, run) => {
    run();
    if (action === "rebuild") diff.rebuild = true;
    else (action === "remove" ? diff.remove : diff.add).push(object.replace(/^nft element /, ""));
  };
  converge(host, act, false, { removals: false });
  return diff;
}

/**
 * What a context lacks of its declared objects (CNI CHECK): one line per object the loop would make or fix for it
 * or its networks. Nothing is changed.
 */
export function missingFor(host: Host, context: string): string[] {
  const record = host.store.getContext(context);
  if (!record) return [];
  const present = observeAll(host);
  const own = declareAll(host, host.store.listNetworks(), host.store.listContexts());
  const mine = new Set([`context ${context}`, ...record.spec.attachments.map((a) => `network ${a.network}`)]);
  const found: string[] = [];
  reconcile({
    declared: own.objects.filter((d) => mine.has(d.owner)),
    present,
    act: (action, object) => {
      if (action !== "remove") found.push(`${object} is missing`);
    },
  });
  // Its guards, interfaces and published ports in our nft tables, from the firewall owner's own diff.
  const words = new Set([
    context,
    ...record.spec.attachments.flatMap((a) => (a.hostIfname ? [a.hostIfname] : [])),
  ]);
  host.firewall((fw) => {
    for (const a of fw.reconcile(own.firewall, { dryRun: true, publishCgroup: host.config.publishCgroup }))
      if (a.action !== "remove" && a.object.split(" ").some((w) => words.has(w)))
        found.push(`${a.object} is missing`);
  });
  return found;
}

function converge(host: Host, act: Act, dryRun: boolean, opts: { removals: boolean }): void {
  remakeDevices(host, act);
  const observed = observeAll(host);
  const present = opts.removals
    ? observed
    : new Map([...observed].map(([kind, list]) => [kind, list.map(({ remove: _r, ...keep }) => keep)]));
  const own = declareAll(host, host.store.listNetworks(), host.store.listContexts());
  reconcile({
    // Links were made in the first pass: here they are only owned.
    declared: own.objects.map(({ make, ...d }) => (d.kind === "link" || !make ? d : { ...d, make })),
    present,
    act,
    after: { route: () => reconcileFirewall(host, own.firewall, act, dryRun) },
  });
}

/** The first pass: missing links that records can make (a network's device) are made, nothing is removed. */
function remakeDevices(host: Host, act: Act): void {
  const links = observe(host, "link").map(({ remove: _r, ...keep }) => keep);
  const own = declareAll(host, host.store.listNetworks(), host.store.listContexts());
  reconcile({
    declared: own.objects.filter((d) => d.kind === "link"),
    present: new Map([["link", links]]),
    act,
  });
}

function observeAll(host: Host): Map<ObjectKind, Present[]> {
  const networks = host.store.listNetworks();
  return new Map(
    KIND_ORDER.map((kind) => [
      kind,
      kind === "shortcut"
        ? networks.flatMap((n) => networkDriver(n.driver).observe?.(host, n) ?? [])
        : observe(host, kind),
    ]),
  );
}
