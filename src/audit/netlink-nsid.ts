/**
 * The netlink-other-netns escape seen from the host: root inside a context naming another network namespace by
 * nsid in a netlink request (IFLA_TARGET_NETNSID: create, delete, list links there; IFLA_LINK_NETNSID: a macvlan
 * on a link there). An l2 context's namespace holds an nsid for the host's (its veth's peer lives there), so its
 * target is the host; a shared-stack context runs in the host's namespace, which holds one for every l2 context's,
 * so its target is an l2 context's namespace, and without one the probe is left out.
 *
 * Per audited context the auditor puts a marker (an ifb, down) in the target; the probe
 * (netlink-nsid-script.ts) tries everything through every nsid its namespace holds. "blocked" needs proof that
 * it could have done it: the auditor finds from outside that one of those nsids names the target, every request
 * through it was refused (EPERM/EACCES), the marker is still there under its index and nothing of the probe's
 * appeared, and for l2 the control (the same create and delete on its own stack, no target) worked, or was
 * refused for want of CAP_NET_ADMIN even there (a runtime's namespace: then it holds none over any namespace).
 * Names carry the run's tag, so whatever is left is found and removed (closeNsid, or the exit guard); the markers
 * also carry the run's link group, so they go in one request per namespace (a link's removal waits ~17 ms for the
 * kernel's RCU grace period, one request's for all of its links once).
 */
import { Rtnl } from "../kernel/rtnl.ts";
import { type Call, type EscapeOutcome, type EscapeVerdict, said } from "./evidence.ts";
import { guardExit } from "./exit-guard.ts";
import type { Subject } from "./subjects.ts";

/** What the probe program's nsid_probes() gets. */
export interface NsidParams {
  /** The link (an ifb) it tries to make in the target. */
  create: string;
  /** The auditor's marker in the target, and its ifindex there (the macvlan's parent). */
  marker: string;
  markerIndex: number;
  /**
   * The nsid naming the target, as the auditor found it before the probe (after a link dump in the namespace that
   * holds it): the macvlan, which names its parent by an index that means something in the target alone, goes
   * through this one only, never onto whatever link has that index in another namespace.
   */
  nsid?: number;
  /** The macvlan it tries to make here, on the marker. */
  macvlan: string;
  /** l2: the link of its own stack, the control. */
  control?: string;
}

interface NsidTry {
  nsid: number;
  create: Call;
  /** Through the target's nsid only (NsidParams.nsid). */
  macvlan?: Call;
  dump: Call;
  delete: Call;
  /** The probe's own removal of what an attempt made. */
  undo: Call[];
}

/** What nsid_probes() answers. */
export interface NsidPhase1 {
  listed: Call;
  nsids: Call;
  found: number[];
  tries: NsidTry[];
  control?: { create: Call; delete: Call };
}

interface NsidTarget {
  params: NsidParams;
  /** How the evidence names the target. */
  what: string;
  /** The target namespace's path; undefined: the auditor's own (the host's). */
  netns?: string;
  /** The namespace that holds the nsid: the prober's (l2); undefined: the host's (shared-stack). */
  holder?: string;
  /** Names of this prober's links: every one begins with it. */
  prefix: string;
}

export interface NsidScene {
  tag: string;
  /** The markers' link group (IFLA_GROUP), the run's own. */
  group: number;
  /** By audited context. */
  targets: Map<string, NsidTarget>;
  /** Namespaces the run may have left a tagged link in (undefined: the host's). */
  spaces: (string | undefined)[];
  release: () => void;
}

export interface NsidSeen {
  /** The nsid the holder has for the target, read from outside. */
  nsid?: number;
  markerIndexAfter?: number;
  /** Tagged links of this prober in the target besides the marker. */
  appeared: string[];
  error?: string;
}

/** The host's own namespace as the auditor's thread sees it outside any setns window. */
const HOST_NETNS = "/proc/thread-self/ns/net";

function withRtnl<T>(netns: string | undefined, fn: (r: Rtnl) => T): T {
  const r = Rtnl.open(netns);
  try {
    return fn(r);
  } finally {
    r.close();
  }
}

/** Every link of the run's group or whose name begins with its tag, in every namespace it may be in; failures are told. */
function removeTagged(scene: NsidScene): void {
  for (const space of scene.spaces) {
    try {
      withRtnl(space, (r) => {
        const left = r.linkList().filter((l) => l.name.startsWith(scene.tag) || l.group === scene.group);
        if (left.some((l) => l.group === scene.group)) r.linkDelGroup(scene.group);
        for (const l of left) if (l.group !== scene.group) r.linkDel(l.name);
      });
    } catch (err) {
      // A context removed meanwhile took its namespace, and whatever was in it, along.
      if (space === undefined)
        console.error(`warning: audit could not remove its ${scene.tag}* links: ${(err as Error).message}`);
    }
  }
}

/**
 * The markers, one per audited context that has a target. Never throws: a marker the auditor cannot make leaves
 * that context's probe out. Interface names hold 15 bytes: "nk", six hex digits of the run, the context's index.
 */
export function openNsid(runId: string, audited: Subject[], everyone: Subject[]): NsidScene {
  const tag = `nk${runId.slice(-6)}`;
  // "nk" and 16 bits of the run: apart from LINK_GROUP (0x6e63) and from another audit's at the same time.
  const group = 0x6e6b0000 + Number.parseInt(runId.slice(-4), 16);
  const scene: NsidScene = { tag, group, targets: new Map(), spaces: [undefined], release: () => {} };
  scene.release = guardExit(() => removeTagged(scene));
  const l2Other = everyone.find((o) => !o.shared && o.netns !== undefined);
  const dumped = new Set<string>();
  for (const [i, s] of audited.entries()) {
    const target = !s.shared
      ? s.netns !== undefined
        ? { what: "the host's netns" }
        : undefined
      : l2Other?.netns !== undefined
        ? { what: `${l2Other.name}'s netns`, netns: l2Other.netns }
        : undefined;
    if (!target) continue;
    const prefix = `${tag}${i.toString(36)}`;
    const marker = `${prefix}m`;
    if (target.netns && !scene.spaces.includes(target.netns)) scene.spaces.push(target.netns);
    if (!s.shared && !scene.spaces.includes(s.netns)) scene.spaces.push(s.netns);
    try {
      const markerIndex = withRtnl(target.netns, (r) => {
        r.linkAdd({ name: marker, kind: "ifb", group });
        return r.linkIndex(marker);
      });
      // The dump gives the target its nsid where a link leads there (the veth's peer), as the probe's own does;
      // once per namespace (the host's holds one for every l2 context's and is every shared-stack prober's).
      const holder = s.shared ? undefined : s.netns;
      const nsid = withRtnl(holder, (r) => {
        if (!dumped.has(holder ?? "")) r.linkList();
        dumped.add(holder ?? "");
        return r.nsidOf(target.netns ?? HOST_NETNS);
      });
      scene.targets.set(s.name, {
        ...target,
        ...(s.shared ? {} : { holder: s.netns! }),
        prefix,
        params: {
          create: `${prefix}c`,
          marker,
          markerIndex,
          ...(nsid !== undefined ? { nsid } : {}),
          macvlan: `${prefix}v`,
          ...(s.shared ? {} : { control: `${prefix}o` }),
        },
      });
    } catch {
      // No marker, no probe.
    }
  }
  return scene;
}

/** After every probe's first phase: the nsid that names each target, the marker, what appeared there. */
export function observeNsid(scene: NsidScene): Map<string, NsidSeen> {
  const seen = new Map<string, NsidSeen>();
  // One dump per target namespace: every l2 prober's target is the host's.
  const links = new Map<string, { name: string; index: number }[]>();
  const linksOf = (netns: string | undefined) => {
    const key = netns ?? "";
    let got = links.get(key);
    if (!got) {
      got = withRtnl(netns, (r) => r.linkList().map((l) => ({ name: l.name, index: l.index })));
      links.set(key, got);
    }
    return got;
  };
  for (const [name, t] of scene.targets) {
    const out: NsidSeen = { appeared: [] };
    try {
      const nsid = withRtnl(t.holder, (r) => r.nsidOf(t.netns ?? HOST_NETNS));
      if (nsid !== undefined) out.nsid = nsid;
      for (const l of linksOf(t.netns)) {
        if (l.name === t.params.marker) out.markerIndexAfter = l.index;
        else if (l.name.startsWith(t.prefix)) out.appeared.push(l.name);
      }
    } catch (err) {
      out.error = (err as Error).message;
    }
    seen.set(name, out);
  }
  return seen;
}

/** Remove the markers and whatever a probe left, and drop the exit guard. */
export function closeNsid(scene: NsidScene): void {
  removeTagged(scene);
  scene.release();
}

const REFUSED = ["EPERM", "EACCES"];
const refused = (c: Call) => !c.ok && REFUSED.includes(c.errno ?? "");

export function classifyNsid(x: {
  s: Subject;
  e: NsidPhase1 | undefined;
  scene: NsidScene;
  seen: Map<string, NsidSeen>;
}): EscapeOutcome[] {
  const t = x.scene.targets.get(x.s.name);
  const seen = x.seen.get(x.s.name);
  const { e } = x;
  if (!t || !seen || !e) return [];
  const calls = (k: NsidTry) => [k.create, ...(k.macvlan ? [k.macvlan] : []), k.dump, k.delete];
  const reached = e.tries.some((k) => calls(k).some((c) => c.ok));
  const markerThere = seen.markerIndexAfter === t.params.markerIndex;
  const through = e.tries.find((k) => seen.nsid !== undefined && k.nsid === seen.nsid);
  const c = e.control;
  const controlOk =
    t.holder === undefined ||
    (c !== undefined && ((c.create.ok && c.delete.ok) || (!c.create.ok && c.create.errno === "EPERM")));
  const possible = reached || !markerThere || seen.appeared.length > 0;
  const provenBlocked =
    seen.error === undefined && through?.macvlan !== undefined && calls(through).every(refused) && controlOk;
  const result: EscapeVerdict = possible ? "possible" : provenBlocked ? "blocked" : "inconclusive";
  const holder = t.holder === undefined ? "the host's netns" : `${x.s.name}'s netns`;
  const evidence = [
    `${said(e.nsids)}: ${e.found.length ? `nsids ${e.found.join(",")}` : "none"} (after ${said(e.listed)})`,
    `outside: ${holder} ${
      seen.nsid !== undefined ? `holds nsid ${seen.nsid} for ${t.what}` : `holds no nsid for ${t.what}`
    } (before the probe: ${t.params.nsid ?? "none"})${seen.error ? ` (${seen.error})` : ""}`,
    ...e.tries.flatMap((k) => [...calls(k), ...k.undo].map(said)),
    ...(c ? [`control, its own stack: ${said(c.create)}; ${said(c.delete)}`] : []),
    `${t.what}: marker ${t.params.marker} (index ${t.params.markerIndex}) ${
      markerThere
        ? "still there"
        : seen.markerIndexAfter === undefined
          ? "GONE"
          : `REPLACED (index ${seen.markerIndexAfter})`
    }, ${seen.appeared.length ? `APPEARED: ${seen.appeared.join(" ")}` : `nothing named ${t.prefix}* appeared`}`,
  ];
  if (c && !c.create.ok && c.create.errno === "EPERM")
    evidence.push("no CAP_NET_ADMIN even over its own stack, so none over a namespace it names");
  return [{ probe: "netlink-other-netns", result, evidence: evidence.join("; ") }];
}
