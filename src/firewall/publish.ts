/**
 * Published ports: DNAT through nft maps in `table inet netctx`, so the rule count stays fixed whatever the
 * number of publications (each one is a map element carrying its context's name as comment).
 *
 *  - `pub4`/`pub6` (`l4proto . dport : addr . port`): every host address; `pub4h`/`pub6h` add the host address
 *    in front of the key for `HOSTIP:HOSTPORT:PORT`. Looked up only for packets to a local address (`fib daddr
 *    type local`), so a context's own connections to port 8080 somewhere else are never hijacked.
 *  - `publish_pre` (prerouting): from outside and hairpin from a context; `publish_out` (output): from the host.
 *  - `publish_post`: DNAT'd traffic whose new destination is in its source's network (a context reaching a
 *    neighbour through the host's address) is masqueraded, or the neighbour answers it directly and the client
 *    drops the reply from an address it never spoke to. `intra4`/`intra6` are Firewall's sets (`subnet . subnet`).
 *  - Loopback is never DNAT'd: in prerouting a packet to 127.0.0.1 can only come from off-host (the reference
 *    portmap plugin's route_localnet lets it in), and in output the kernel refuses to route a 127.0.0.1 source
 *    out of a non-loopback device without route_localnet (the DNAT'd SYN vanishes). The host reaches 127.0.0.1
 *    and ::1 through a cgroup connect hook instead (kernel/bpf/publish-loopback.ts).
 *
 * These chains and maps are unknown to Firewall (firewall.ts): its health check counts only its own chains. A
 * Firewall rebuild (after a flush) drops them; gc re-publishes ready contexts.
 */
import { conflict, NetctxError } from "../errors.ts";
import type { Host } from "../host.ts";
import { attachLoopbackPublish, detachLoopbackPublish } from "../kernel/bpf/publish-loopback.ts";
import { type Published, publishCollides } from "../model/publish.ts";
import { parseIp } from "../net/cidr.ts";
import { Nft, type NftObject, type NftValue } from "./nft.ts";

const TABLE = "netctx";
const T = `inet ${TABLE}`;

interface MapDef {
  name: string;
  family: 4 | 6;
  withHost: boolean;
  key: string[];
  data: string;
}

const MAPS: readonly MapDef[] = [
  {
    name: "pub4",
    family: 4,
    withHost: false,
    key: ["inet_proto", "inet_service"],
    data: "ipv4_addr . inet_service",
  },
  {
    name: "pub4h",
    family: 4,
    withHost: true,
    key: ["ipv4_addr", "inet_proto", "inet_service"],
    data: "ipv4_addr . inet_service",
  },
  {
    name: "pub6",
    family: 6,
    withHost: false,
    key: ["inet_proto", "inet_service"],
    data: "ipv6_addr . inet_service",
  },
  {
    name: "pub6h",
    family: 6,
    withHost: true,
    key: ["ipv6_addr", "inet_proto", "inet_service"],
    data: "ipv6_addr . inet_service",
  },
];

const DNAT_RULES = [
  "meta nfproto ipv4 ip daddr != 127.0.0.0/8 fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @pub4h",
  "meta nfproto ipv4 ip daddr != 127.0.0.0/8 fib daddr type local dnat ip to meta l4proto . th dport map @pub4",
  "meta nfproto ipv6 ip6 daddr != ::1 fib daddr type local dnat ip6 to ip6 daddr . meta l4proto . th dport map @pub6h",
  "meta nfproto ipv6 ip6 daddr != ::1 fib daddr type local dnat ip6 to meta l4proto . th dport map @pub6",
];

interface ChainDef {
  name: string;
  hook: string;
  prio: number;
  rules: string[];
}

const CHAINS: readonly ChainDef[] = [
  { name: "publish_pre", hook: "prerouting", prio: -100, rules: DNAT_RULES },
  { name: "publish_out", hook: "output", prio: -100, rules: DNAT_RULES },
  {
    name: "publish_post",
    hook: "postrouting",
    prio: 100,
    rules: [
      "ct status dnat ip saddr . ip daddr @intra4 masquerade",
      "ct status dnat ip6 saddr . ip6 daddr @intra6 masquerade",
    ],
  },
];

/** Rules of the publish chains: fixed, whatever the number of publications. */
export const PUBLISH_RULE_COUNT = CHAINS.reduce((n, c) => n + c.rules.length, 0);

/** A publication as the kernel holds it. */
export interface PublishElement {
  map: string;
  context: string;
  /** nft text of the key, `tcp . 8080` or `192.0.2.1 . tcp . 8080`. */
  key: string;
  /** `10.1.0.2 . 80` */
  target: string;
}

/** Where a context's publications go: its first address of each family. */
export interface PublishTarget {
  v4?: string;
  v6?: string;
}

/**
 * Make the kernel hold exactly these publications for `context` (an empty list removes them). A host port held
 * by another context's element is a conflict and nothing changes.
 */
export function publishContext(
  host: Host,
  context: string,
  published: Published[],
  target: PublishTarget,
): void {
  checkComment(context);
  host.firewall(() => {
    const nft = new Nft();
    const objs = nft.list(["table", "inet", TABLE]);
    if (objs === null && published.length === 0) return;
    const have = elementsOf(objs ?? []);
    const want = desired(context, published, target);
    for (const w of want) {
      const other = have.find((h) => h.map === w.map && h.key === w.key && h.context !== context);
      if (other)
        throw conflict(
          "publish",
          `host port ${w.key.replaceAll(" ", "")} is published by context "${other.context}"`,
        );
    }
    const mine = have.filter((h) => h.context === context);
    const lines = [...ensureScript(objs)];
    const gone = mine.filter((h) => !want.some((w) => same(w, h)));
    const added = want.filter((w) => !mine.some((h) => same(w, h)));
    for (const def of MAPS) {
      const del = gone.filter((e) => e.map === def.name);
      if (del.length) lines.push(`delete element ${T} ${def.name} { ${del.map((e) => e.key).join(", ")} }`);
    }
    for (const def of MAPS) {
      const add = added.filter((e) => e.map === def.name);
      if (add.length)
        lines.push(
          `add element ${T} ${def.name} { ${add.map((e) => `${e.key} comment "${context}" : ${e.target}`).join(", ")} }`,
        );
    }
    if (want.length > 0 || mine.length > 0) nft.apply(lines.join("\n"));
    attachLoopbackPublish(published, target);
  });
}

/**
 * Remove every map element of `context` and the loopback programs of `published` (its recorded publications);
 * missing ones are fine.
 */
export function unpublishContext(host: Host, context: string, published: readonly Published[] = []): void {
  checkComment(context);
  host.firewall(() => {
    const nft = new Nft();
    const objs = nft.list(["table", "inet", TABLE]);
    const mine = elementsOf(objs ?? []).filter((e) => e.context === context);
    const lines: string[] = [];
    for (const def of MAPS) {
      const del = mine.filter((e) => e.map === def.name);
      if (del.length) lines.push(`delete element ${T} ${def.name} { ${del.map((e) => e.key).join(", ")} }`);
    }
    nft.apply(lines.join("\n"));
    detachLoopbackPublish(published);
  });
}

/** Every publication element in our maps (for inspect, gc and tests). */
export function publishedElements(nft = new Nft()): PublishElement[] {
  return elementsOf(nft.list(["table", "inet", TABLE]) ?? []);
}

/** A context's publications as its record states them. */
export interface WantedPublish {
  context: string;
  published: Published[];
  target: PublishTarget;
}

/**
 * Compare records with the kernel in one listing: contexts missing any of their elements (all of them, when a
 * chain or map is damaged: a flush or a table rebuild), and contexts that own elements but are not wanted.
 */
export function publishDrift(
  wanted: WantedPublish[],
  nft = new Nft(),
): { missing: string[]; stray: string[] } {
  const objs = nft.list(["table", "inet", TABLE]);
  const healthy = ensureScript(objs).length === 0;
  const have = elementsOf(objs ?? []);
  const missing = wanted
    .filter(
      (w) =>
        !healthy ||
        desired(w.context, w.published, w.target).some(
          (d) => !have.some((h) => same(h, d) && h.context === w.context),
        ),
    )
    .map((w) => w.context);
  const names = new Set(wanted.map((w) => w.context));
  const stray = [...new Set(have.map((h) => h.context))].filter((c) => !names.has(c));
  return { missing, stray };
}

/** The kernel's publish chains hold their fixed rules and the maps exist. */
export function publishHealthy(nft = new Nft()): boolean {
  return ensureScript(nft.list(["table", "inet", TABLE])).length === 0;
}

// ---------------------------------------------------------------------------------------------------------

function checkComment(context: string): void {
  if (!/^[a-z0-9][a-z0-9_-]{0,63}$/.test(context))
    throw new NetctxError("internal", `publish: context name "${context}" cannot be an nft comment`);
}

function same(a: PublishElement, b: PublishElement): boolean {
  return a.map === b.map && a.key === b.key && a.target === b.target;
}

function desired(context: string, published: Published[], target: PublishTarget): PublishElement[] {
  const out: PublishElement[] = [];
  for (const [i, p] of published.entries()) {
    if (published.slice(0, i).some((q) => publishCollides(p, q)))
      throw conflict("publish", `host port ${p.hostPort}/${p.protocol} is published twice`);
    const hostFamily = p.hostIp === undefined ? undefined : parseIp(p.hostIp, "publish").family;
    for (const family of [4, 6] as const) {
      const addr = family === 4 ? target.v4 : target.v6;
      if (addr === undefined || (hostFamily !== undefined && hostFamily !== family)) continue;
      // Loopback host addresses are served by the connect hook alone (see the header).
      if (p.hostIp === "127.0.0.1" || p.hostIp === "::1") continue;
      const map = `pub${family}${p.hostIp === undefined ? "" : "h"}`;
      const key = `${p.hostIp === undefined ? "" : `${p.hostIp} . `}${p.protocol} . ${p.hostPort}`;
      out.push({ map, context, key, target: `${addr} . ${p.port}` });
    }
  }
  return out;
}

/** Lines that create what is missing or damaged; empty when healthy. Elements of intact maps survive. */
function ensureScript(objs: NftObject[] | null): string[] {
  const maps = new Map<string, { [key: string]: NftValue }>();
  const chains = new Map<string, { [key: string]: NftValue }>();
  const rules = new Map<string, number>();
  for (const o of objs ?? []) {
    const m = asRecord(o["map"]);
    const c = asRecord(o["chain"]);
    const r = asRecord(o["rule"]);
    if (m) maps.set(String(m["name"]), m);
    if (c) chains.set(String(c["name"]), c);
    if (r) rules.set(String(r["chain"]), (rules.get(String(r["chain"])) ?? 0) + 1);
  }
  const badMaps = MAPS.filter((d) => {
    const m = maps.get(d.name);
    if (!m) return true;
    const type = Array.isArray(m["type"]) ? m["type"].map(String) : [String(m["type"])];
    return type.join(" . ") !== d.key.join(" . ") || String(m["map"]) !== d.data;
  });
  const badChains = CHAINS.filter((d) => {
    const c = chains.get(d.name);
    return (
      !c ||
      c["hook"] !== d.hook ||
      c["prio"] !== d.prio ||
      c["type"] !== "nat" ||
      rules.get(d.name) !== d.rules.length
    );
  });
  if (badMaps.length === 0 && badChains.length === 0) return [];
  const lines = [`add table ${T}`];
  // A map in use cannot be deleted: the chains referring to it are emptied first and refilled below.
  const refill = badMaps.some((d) => maps.has(d.name)) ? CHAINS : badChains;
  for (const c of refill) {
    const old = chains.get(c.name);
    if (old && (old["hook"] !== c.hook || old["prio"] !== c.prio || old["type"] !== "nat"))
      lines.push(`delete chain ${T} ${c.name}`);
    else if (old) lines.push(`flush chain ${T} ${c.name}`);
  }
  for (const d of badMaps) {
    if (maps.has(d.name)) lines.push(`delete map ${T} ${d.name}`);
    lines.push(`add map ${T} ${d.name} { type ${d.key.join(" . ")} : ${d.data}; }`);
  }
  for (const c of refill) {
    lines.push(`add chain ${T} ${c.name} { type nat hook ${c.hook} priority ${c.prio}; policy accept; }`);
    for (const r of c.rules) lines.push(`add rule ${T} ${c.name} ${r}`);
  }
  return lines;
}

function elementsOf(objs: NftObject[]): PublishElement[] {
  const out: PublishElement[] = [];
  for (const o of objs) {
    const m = asRecord(o["map"]);
    if (!m || !MAPS.some((d) => d.name === m["name"])) continue;
    for (const raw of Array.isArray(m["elem"]) ? m["elem"] : []) {
      if (!Array.isArray(raw) || raw.length !== 2) continue;
      const wrapped = asRecord(asRecord(raw[0])?.["elem"]);
      const keyVal = wrapped ? (wrapped["val"] ?? null) : (raw[0] ?? null);
      const comment = wrapped && typeof wrapped["comment"] === "string" ? wrapped["comment"] : "";
      out.push({
        map: String(m["name"]),
        context: comment,
        key: concatText(keyVal),
        target: concatText(raw[1] ?? null),
      });
    }
  }
  return out;
}

function concatText(v: NftValue): string {
  const concat = asRecord(v)?.["concat"];
  return Array.isArray(concat) ? concat.map((x) => String(x)).join(" . ") : String(v);
}

function asRecord(v: NftValue | undefined): { [key: string]: NftValue } | null {
  return v !== null && v !== undefined && typeof v === "object" && !Array.isArray(v) ? v : null;
}
