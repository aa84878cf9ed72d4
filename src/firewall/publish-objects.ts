/**
 * What publishing keeps in `table inet netctx` (publish.ts says how it works): four DNAT maps whose elements carry
 * their context's name as comment, and three chains with fixed rules.
 */
import { conflict, NetctxError } from "../errors.ts";
import { type Published, publishCollides } from "../model/publish.ts";
import { parseIp } from "../net/cidr.ts";
import type { NftValue } from "./nft.ts";
import {
  asRecord,
  type ChainDecl,
  listedElements,
  type SetDecl,
  setHealthy,
  type TableListing,
  type TablePart,
} from "./tables.ts";

type MapDecl = SetDecl & { kind: "map" };

function pubMap(name: string, key: string[], data: string): MapDecl {
  return { kind: "map", name, decl: `type ${key.join(" . ")} : ${data};`, type: key, data };
}

export const MAPS: readonly MapDecl[] = [
  pubMap("pub4", ["inet_proto", "inet_service"], "ipv4_addr . inet_service"),
  pubMap("pub4h", ["ipv4_addr", "inet_proto", "inet_service"], "ipv4_addr . inet_service"),
  pubMap("pub6", ["inet_proto", "inet_service"], "ipv6_addr . inet_service"),
  pubMap("pub6h", ["ipv6_addr", "inet_proto", "inet_service"], "ipv6_addr . inet_service"),
];

const DNAT_RULES = [
  "meta nfproto ipv4 ip daddr != 127.0.0.0/8 fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @pub4h",
  "meta nfproto ipv4 ip daddr != 127.0.0.0/8 fib daddr type local dnat ip to meta l4proto . th dport map @pub4",
  "meta nfproto ipv6 ip6 daddr != ::1 fib daddr type local dnat ip6 to ip6 daddr . meta l4proto . th dport map @pub6h",
  "meta nfproto ipv6 ip6 daddr != ::1 fib daddr type local dnat ip6 to meta l4proto . th dport map @pub6",
];

const CHAINS: readonly ChainDecl[] = [
  { name: "publish_pre", type: "nat", hook: "prerouting", prio: -100, rules: DNAT_RULES },
  { name: "publish_out", type: "nat", hook: "output", prio: -100, rules: DNAT_RULES },
  {
    name: "publish_post",
    type: "nat",
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

export const PUBLISH: TablePart = {
  job: "publish",
  family: "inet",
  sets: MAPS,
  chains: CHAINS,
  listed: (listing) =>
    elementsOf(
      listing,
      MAPS.filter((m) => setHealthy(listing, m)),
    ).map((e) => ({
      set: e.map,
      text: elementText(e),
      owner: e.context,
    })),
};

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

/** A context's publications as its record states them. */
export interface WantedPublish {
  context: string;
  published: Published[];
  target: PublishTarget;
}

export function checkComment(context: string): void {
  if (!/^[a-z0-9][a-z0-9_-]{0,63}$/.test(context))
    throw new NetctxError("internal", `publish: context name "${context}" cannot be an nft comment`);
}

export function same(a: PublishElement, b: PublishElement): boolean {
  return a.map === b.map && a.key === b.key && a.target === b.target;
}

/** The host port a wanted element takes, held by another context's element. */
export function taken(w: PublishElement, have: readonly PublishElement[]): NetctxError | undefined {
  const other = have.find((h) => h.map === w.map && h.key === w.key && h.context !== w.context);
  return other
    ? conflict("publish", `host port ${w.key.replaceAll(" ", "")} is published by context "${other.context}"`)
    : undefined;
}

export function desired(context: string, published: Published[], target: PublishTarget): PublishElement[] {
  const out: PublishElement[] = [];
  for (const [i, p] of published.entries()) {
    if (published.slice(0, i).some((q) => publishCollides(p, q)))
      throw conflict("publish", `host port ${p.hostPort}/${p.protocol} is published twice`);
    const hostFamily = p.hostIp === undefined ? undefined : parseIp(p.hostIp, "publish").family;
    for (const family of [4, 6] as const) {
      const addr = family === 4 ? target.v4 : target.v6;
      if (addr === undefined || (hostFamily !== undefined && hostFamily !== family)) continue;
      // Loopback host addresses are served by the connect hook alone (see publish.ts).
      if (p.hostIp === "127.0.0.1" || p.hostIp === "::1") continue;
      const map = `pub${family}${p.hostIp === undefined ? "" : "h"}`;
      const key = `${p.hostIp === undefined ? "" : `${p.hostIp} . `}${p.protocol} . ${p.hostPort}`;
      out.push({ map, context, key, target: `${addr} . ${p.port}` });
    }
  }
  return out;
}

/** An element as a script adds it. */
export function elementText(e: PublishElement): string {
  return `${e.key} comment "${e.context}" : ${e.target}`;
}

/** The lines deleting (by key) and adding these elements, each map in one line, deletes first. */
export function mapLines(
  table: string,
  del: readonly PublishElement[],
  add: readonly PublishElement[],
): string[] {
  const lines: string[] = [];
  for (const def of MAPS) {
    const d = del.filter((e) => e.map === def.name);
    if (d.length)
      lines.push(`delete element inet ${table} ${def.name} { ${d.map((e) => e.key).join(", ")} }`);
  }
  for (const def of MAPS) {
    const a = add.filter((e) => e.map === def.name);
    if (a.length) lines.push(`add element inet ${table} ${def.name} { ${a.map(elementText).join(", ")} }`);
  }
  return lines;
}

/** Every publication element in the listed maps. */
export function elementsOf(listing: TableListing, maps: readonly MapDecl[] = MAPS): PublishElement[] {
  const out: PublishElement[] = [];
  for (const def of maps) {
    if (!listing.maps.has(def.name)) continue;
    for (const raw of listedElements(listing, def)) {
      if (!Array.isArray(raw) || raw.length !== 2) continue;
      const wrapped = asRecord(asRecord(raw[0])?.["elem"]);
      const keyVal = wrapped ? (wrapped["val"] ?? null) : (raw[0] ?? null);
      const comment = wrapped && typeof wrapped["comment"] === "string" ? wrapped["comment"] : "";
      out.push({
        map: def.name,
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
