/**
 * The one reconcile loop: per kind of kernel object, in a written order, compare what the kernel holds with our
 * marks (observed by the caller, before it read the records) with what the records declare (networks/ownership.ts),
 * then remove what nobody owns, make what is missing and fix what differs. What sits on a link removed earlier in
 * the pass went with it; what sits on a link that is not there waits for it.
 */
import { errorLine } from "../../errors.ts";
import type { Declared, Fix, ObjectKind, Present } from "../../networks/ownership.ts";

/** Record one change and make it (unless a dry run): gc's report line; `owner` names the record a make is for. */
export type Act = (action: string, object: string, reason: string, run: () => void, owner?: string) => void;

/**
 * Removals before makes within a kind; kinds in this order. Links first: what sits on a removed link goes with it,
 * and a network's device made again carries its addresses and routes. Routes after addresses: a route names its
 * gateway address as source.
 */
export const KIND_ORDER: readonly ObjectKind[] = [
  "link",
  "netns",
  "cgroup",
  "rule",
  "address",
  "route",
  "neighbour",
  "shortcut",
];

export interface LoopInput {
  declared: readonly Declared[];
  /** What the kernel held of each kind, observed before the records were read. */
  present: ReadonlyMap<ObjectKind, readonly Present[]>;
  act: Act;
  /** Runs after the given kind (the firewall owner's turn comes after routes). */
  after?: Partial<Record<ObjectKind, () => void>>;
}

export function reconcile(input: LoopInput): void {
  const removedLinks = new Set<string>();
  const links = new Set((input.present.get("link") ?? []).map((l) => l.id));
  for (const kind of KIND_ORDER) {
    const declared = input.declared.filter((d) => d.kind === kind);
    const exact = new Map<string, Declared[]>();
    for (const d of declared) if (!d.prefix) exact.set(d.id, [...(exact.get(d.id) ?? []), d]);
    const prefixes = declared.filter((d) => d.prefix).map((d) => d.id);
    const present = input.present.get(kind) ?? [];
    const there = new Set<string>();
    for (const p of present) {
      const owned = exact.has(p.id) || prefixes.some((prefix) => p.id.startsWith(prefix));
      if (owned) {
        there.add(p.id);
        continue;
      }
      if (!p.remove || (p.on !== undefined && removedLinks.has(p.on))) continue;
      if (kind === "link") {
        removedLinks.add(p.id);
        links.delete(p.id);
      }
      input.act("remove", p.object ?? `${kind} ${p.id}`, p.unowned ?? "no record owns it", p.remove);
    }
    for (const [id, ds] of exact) {
      const d = ds.find((x) => x.make) ?? ds[0]!;
      if (!there.has(id)) {
        if (d.make && (d.on === undefined || links.has(d.on))) fix(input.act, d.make, d.owner);
        continue;
      }
      for (const x of ds) {
        const wrong = x.check?.();
        if (wrong) fix(input.act, wrong, x.owner);
      }
    }
    input.after?.[kind]?.();
  }
}

function fix(act: Act, f: Fix, owner: string): void {
  act(f.action, f.object, f.reason, f.run, owner);
}

/** An Act that records every change in `report` and makes it unless `dryRun`; a failed change is noted, not thrown. */
export function recordingAct(report: {
  dryRun: boolean;
  actions: { action: string; object: string; reason: string; error?: string }[];
}): Act {
  return (action, object, reason, run) => {
    const a: { action: string; object: string; reason: string; error?: string } = { action, object, reason };
    report.actions.push(a);
    if (report.dryRun) return;
    try {
      run();
    } catch (err) {
      a.error = errorLine(err);
    }
  };
}
