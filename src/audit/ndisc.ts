/**
 * The rogue Router and Neighbour Advertisement probes (issue 15, escapes 8 and 9) seen from the host: which second
 * context each l2 context on a bridge network aims at, the precondition the NA needs (a neighbour entry for the
 * gateway in the second context, which an unsolicited NA updates but never creates), what the second context's
 * own routes and neighbours show afterwards, read through its netns, and the cleanup.
 * An RA's default route can be gone again before the auditor reads the routes: the kernel removes a router from
 * the default router list as soon as a Neighbour Advertisement from it lacks the router flag (RFC 4861 7.2.5,
 * ndisc_recv_na -> rt6_clean_tohost), and the sender's own kernel answers the second context's neighbour probes
 * with such NAs (a context does not forward). So the second context's route notifications are watched from before
 * the probes: a route via the sender installed at any moment is the escape, and "blocked" needs that watch intact.
 */
import { netnsSnmp6 } from "../kernel/proc-net.ts";
import type { Route } from "../kernel/route.ts";
import { RouteWatch } from "../kernel/route-watch.ts";
import { Rtnl } from "../kernel/rtnl.ts";
import { linkLocalOf, parseIp } from "../net/cidr.ts";
import type { Subject } from "./subjects.ts";

export interface NdiscPair {
  x: Subject;
  y: Subject;
  /** What the probe in x gets (escape-script.ts ndisc_probe). */
  params: {
    ifname: string;
    ll: string;
    global?: string;
    peerLl: string;
    peerGlobal?: string;
    mac: string;
    gateway6: string;
  };
  /** y's entry for the gateway before the NA: found, added by the auditor, or missing (then the NA proves nothing). */
  gwEntry: "found" | "added" | "missing";
  gwEntryNote: string;
  /** y's route notifications from before the probes (one watch per y, shared by the pairs aiming at it). */
  watch: YWatch;
}

interface YWatch {
  routes?: RouteWatch;
  /** Why there is no watch, or why it went blind. */
  note: string;
  /** y's Icmp6InRouterAdvertisements before the probes: how many RAs reached its stack since. */
  rasBefore?: number;
}

export interface NdiscSeen {
  /** y's kernel installed a route through x's link-local address (still there, or seen in its notifications). */
  raRoute: boolean;
  /** y's route notifications were read without loss since before the probes: a route could not have been missed. */
  raWatched: boolean;
  raEvidence: string;
  /** y's entry for the gateway carries x's MAC. */
  poisoned: boolean;
  /** y still has an entry for the gateway (an NA can only update one that exists). */
  gwEntryAfter: boolean;
  naEvidence: string;
}

const canon = (ip: string) => parseIp(ip, "address").text;

function v6Of(s: Subject): string | undefined {
  return s.att.addresses.map((a) => a.split("/")[0]!).find((a) => a.includes(":"));
}

function gateway6Of(s: Subject): string | undefined {
  return s.net.subnets.find((n) => n.cidr.includes(":"))?.gateway ?? undefined;
}

/** Can this context take part (send, or be the second context) on its bridge network? */
function fit(s: Subject): boolean {
  return (
    !s.shared &&
    s.guard === "bridge" &&
    s.netns !== undefined &&
    s.mac !== undefined &&
    s.gwMac !== undefined &&
    v6Of(s) !== undefined &&
    gateway6Of(s) !== undefined
  );
}

/** The second context for x: preferably `preferred`, else any fit l2 context on x's bridge network. */
export function ndiscPair(
  x: Subject,
  preferred: Subject | undefined,
  everyone: Subject[],
): NdiscPair | undefined {
  if (!fit(x)) return undefined;
  const same = (o: Subject) => o !== x && fit(o) && o.net.name === x.net.name;
  const y = preferred && same(preferred) ? preferred : everyone.find(same);
  if (!y) return undefined;
  return {
    x,
    y,
    params: {
      ifname: x.att.ifname,
      // netctx gives a context's interface the EUI-64 link-local of its MAC (networks/common.ts setLinkLocal).
      ll: canon(linkLocalOf(x.mac!)),
      global: v6Of(x)!,
      peerLl: canon(linkLocalOf(y.mac!)),
      peerGlobal: v6Of(y)!,
      mac: x.mac!.toLowerCase(),
      gateway6: canon(gateway6Of(x)!),
    },
    gwEntry: "missing",
    gwEntryNote: "",
    watch: { note: "not watched" },
  };
}

function withRtnl<T>(netns: string, fn: (r: Rtnl) => T): T {
  const r = Rtnl.open(netns);
  try {
    return fn(r);
  } finally {
    r.close();
  }
}

/**
 * Give every second context an entry for its gateway, as any context that has talked to it has (the real MAC,
 * state reachable): an unsolicited NA with the override flag rewrites such an entry and is ignored without one.
 */
export function prepareNdisc(pairs: NdiscPair[]): void {
  const watches = new Map<string, YWatch>();
  for (const p of pairs) {
    const known = watches.get(p.y.name);
    if (known) {
      p.watch = known;
      continue;
    }
    try {
      p.watch = { routes: RouteWatch.open(p.y.netns!), note: "" };
    } catch (err) {
      p.watch.note = `could not watch ${p.y.name}'s routes: ${(err as Error).message}`;
    }
    try {
      const ras = netnsSnmp6(p.y.netns!).get("Icmp6InRouterAdvertisements");
      if (ras !== undefined) p.watch.rasBefore = ras;
    } catch {
      // The count only explains the evidence; without it the watch still decides.
    }
    watches.set(p.y.name, p.watch);
  }
  const added = new Map<string, NdiscPair["gwEntry"]>();
  for (const p of pairs) {
    const { y } = p;
    const key = `${y.name} ${p.params.gateway6}`;
    const known = added.get(key);
    if (known) {
      p.gwEntry = known === "added" ? "found" : known;
      p.gwEntryNote = `${y.name}: entry for ${p.params.gateway6} prepared for another probe`;
      continue;
    }
    try {
      withRtnl(y.netns!, (r) => {
        const entry = r.neighList(y.att.ifname).find((n) => canon(n.ip) === p.params.gateway6);
        if (entry?.mac) {
          p.gwEntry = "found";
          p.gwEntryNote = `${y.name} had ${p.params.gateway6} lladdr ${entry.mac} (${entry.state})`;
          return;
        }
        if (entry) r.neighDel({ ifname: y.att.ifname, ip: p.params.gateway6 });
        r.neighAdd({ ifname: y.att.ifname, ip: p.params.gateway6, mac: y.gwMac!, state: "reachable" });
        p.gwEntry = "added";
        p.gwEntryNote = `auditor added ${p.params.gateway6} lladdr ${y.gwMac} (reachable) in ${y.name}`;
      });
    } catch (err) {
      p.gwEntry = "missing";
      p.gwEntryNote = `could not prepare ${y.name}'s entry for ${p.params.gateway6}: ${(err as Error).message}`;
    }
    added.set(key, p.gwEntry);
  }
}

/** What y's route notifications and RA counter say since before the probes. */
function watched(p: NdiscPair): { installed: Route[]; intact: boolean; note: string } {
  const { watch, params, y } = p;
  // The count first: an RA it counts has been handled by the time the notifications are read (ndisc_rcv runs right
  // after the count, in the same softirq), bar one on another CPU in that very moment; the next reading has it.
  const ras =
    watch.rasBefore === undefined ? undefined : netnsSnmp6(y.netns!).get("Icmp6InRouterAdvertisements");
  const all = watch.routes?.routes();
  const installed = (all ?? []).filter((rt) => rt.gateway && canon(rt.gateway) === params.ll);
  const arrived =
    ras === undefined || watch.rasBefore === undefined
      ? "RAs that reached its stack: unknown"
      : `RAs that reached its stack: ${ras - watch.rasBefore}`;
  if (!all)
    return {
      installed,
      intact: false,
      note: `route notifications: ${watch.routes?.lostReason ?? watch.note}; ${arrived}`,
    };
  const listed = installed.map((rt) => `${rt.dst} via ${rt.gateway} table ${rt.table}`).join(", ");
  return {
    installed,
    intact: true,
    note: `routes via ${params.ll} installed since the probe started: ${listed || "none"}; ${arrived}`,
  };
}

function look(p: NdiscPair): NdiscSeen {
  const { y, params } = p;
  const w = watched(p);
  return withRtnl(y.netns!, (r) => {
    const via = r.routeList({ family: 6 }).filter((rt) => rt.gateway && canon(rt.gateway) === params.ll);
    const entry = r.neighList(y.att.ifname).find((n) => canon(n.ip) === params.gateway6);
    const poisoned = entry?.mac?.toLowerCase() === params.mac;
    return {
      raRoute: via.length > 0 || w.installed.length > 0,
      raWatched: w.intact,
      raEvidence: `${y.name}: ip -6 route (all tables) via ${params.ll}: ${
        via.length ? via.map((rt) => `${rt.dst} dev ${rt.dev ?? "?"} table ${rt.table}`).join(", ") : "none"
      }${w.installed.length > 0 && via.length === 0 ? " (withdrawn again)" : ""}; ${w.note}`,
      poisoned,
      gwEntryAfter: entry !== undefined,
      naEvidence: `${y.name}: ip -6 neigh ${params.gateway6}: ${
        entry
          ? `${entry.mac ?? "no lladdr"} (${entry.state})${poisoned ? `, ${p.x.name}'s MAC` : ""}`
          : "no entry"
      }`,
    };
  });
}

/**
 * Read each second context until both effects show or `deadline` (ms since the epoch) passes: the probes send the
 * Advertisements before anything else and say when, so the deadline is usually past by the time all have answered.
 */
export async function observeNdisc(pairs: NdiscPair[], deadline: number): Promise<Map<string, NdiscSeen>> {
  const seen = new Map<string, NdiscSeen>();
  for (;;) {
    const pending = pairs.filter((p) => {
      const s = seen.get(p.x.name);
      return !(s?.raRoute && s.poisoned);
    });
    for (const p of pending) {
      try {
        seen.set(p.x.name, look(p));
      } catch (err) {
        const note = `could not read ${p.y.name}: ${(err as Error).message}`;
        seen.set(p.x.name, {
          raRoute: false,
          raWatched: false,
          raEvidence: note,
          poisoned: false,
          gwEntryAfter: false,
          naEvidence: note,
        });
      }
    }
    if (pending.length === 0 || Date.now() >= deadline) return seen;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Undo in y what x's Advertisements (or the auditor's precondition) left: routes via x, a poisoned or added entry. */
export function cleanupNdisc(pairs: NdiscPair[]): void {
  for (const w of new Set(pairs.map((p) => p.watch))) w.routes?.close();
  for (const p of pairs) {
    const { y, params } = p;
    try {
      withRtnl(y.netns!, (r) => {
        for (const rt of r.routeList({ family: 6 }))
          if (rt.gateway && canon(rt.gateway) === params.ll)
            r.routeDel({
              dst: rt.dst,
              family: 6,
              gateway: rt.gateway,
              table: rt.table,
              ...(rt.dev ? { dev: rt.dev } : {}),
            });
        const entry = r.neighList(y.att.ifname).find((n) => canon(n.ip) === params.gateway6);
        if (entry && (p.gwEntry === "added" || entry.mac?.toLowerCase() === params.mac))
          r.neighDel({ ifname: y.att.ifname, ip: params.gateway6 });
      });
    } catch {
      // The context may be gone already; a route from an RA expires after 30 s by itself.
    }
  }
}
