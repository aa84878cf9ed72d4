/**
 * Our nft tables (`inet netctx`, `bridge netctx`, `arp netctx`, or a store's own name: naming.ts) and the terms the firewall's parts declare their
 * objects in: the sets, maps and chains (with hook, priority and rules) a part needs in a table, and how its
 * elements read back from a listing. One owner writes the tables (firewall.ts); the parts are registered in
 * parts.ts. Reading a listing is generic here; what an element means is each part's business.
 */
import type { NftObject, NftValue } from "./nft.ts";

/**
 * The name the first store on a host claims for its tables; another store's are `netctx-<its id>` (naming.ts). A
 * Firewall (and every helper that writes a table's name) is given its store's name: see TableRef.
 */
export const CLAIMED_NAME = "netctx";

/** Which tables a Firewall owns: their name, and the comment that marks them its store's (naming.ts). */
export interface TableRef {
  name: string;
  /** Written on every table made anew; absent: none (a Firewall without a store, as in tests). */
  comment?: string | undefined;
  /** The id of the store whose tables they are (absent: no store's). */
  store?: string | undefined;
}

export type TableFamily = "inet" | "bridge" | "arp";

/** Every family we keep a table in, in the order a rebuild writes them (and a fresh host made them). */
export const FAMILIES: readonly TableFamily[] = ["inet", "bridge", "arp"];

export type NftRecord = { [key: string]: NftValue };

export function asRecord(v: NftValue | undefined): NftRecord | null {
  return v !== null && v !== undefined && typeof v === "object" && !Array.isArray(v) ? v : null;
}

/** A set or a map a part needs. The checks run against the listing only for the fields given. */
export interface SetDecl {
  kind: "set" | "map";
  name: string;
  /** What stands between the braces of `add set`: `type ifname . ipv4_addr; flags interval;`. */
  decl: string;
  /** The key type as nft lists it (`["ifname", "ipv4_addr"]`). */
  type?: readonly string[];
  /** A map's data type as nft lists it (`ipv4_addr . inet_service`). */
  data?: string;
  interval?: boolean;
}

/** A base chain with its fixed rules (policy accept, always). */
export interface ChainDecl {
  name: string;
  type: "filter" | "nat";
  hook: string;
  prio: number;
  /** The priority as the script writes it (`srcnat`); the number when absent. */
  prioText?: string;
  rules: readonly string[];
}

/** One element a part holds: its nft text (`"nc-a" . 10.1.0.2`) and, when it has one, whose it is. */
export interface PartElement {
  set: string;
  text: string;
  /** The port (anti-spoofing) or context (publishing) the element belongs to. */
  owner?: string;
}

/** A job's objects in one of our tables (netavark's FirewallDriver parts: NAT, anti-spoofing, port forwarding). */
export interface TablePart {
  job: "nat" | "antispoof" | "publish" | "overlay";
  family: TableFamily;
  /** Sets and maps, made in this order. */
  sets: readonly SetDecl[];
  chains: readonly ChainDecl[];
  /** Made with every rebuild of its table, whoever asks (other parts' rules read its sets). */
  base?: boolean;
  /** What the element level adds to the object checks (NAT: every element reads back into its model). */
  elementsHealthy?: (listing: TableListing) => boolean;
  /** The elements the listing holds in this part's intact sets, to put back when the table is rebuilt. */
  listed: (listing: TableListing) => PartElement[];
}

/** One of our tables as `nft -j list table` shows it, indexed by object. */
export interface TableListing {
  family: TableFamily;
  /** The table listed: its name, and the comment it gets when it is made anew. */
  table: TableRef;
  exists: boolean;
  sets: Map<string, NftRecord>;
  maps: Map<string, NftRecord>;
  chains: Map<string, NftRecord>;
  /** Rules per chain. */
  rules: Map<string, number>;
  /** Every object (table, sets, chains, rules) as listed. */
  objects: NftObject[];
}

export function readTable(family: TableFamily, table: TableRef, objects: NftObject[] | null): TableListing {
  const listing: TableListing = {
    family,
    table,
    exists: objects !== null,
    sets: new Map(),
    maps: new Map(),
    chains: new Map(),
    rules: new Map(),
    objects: objects ?? [],
  };
  for (const o of listing.objects) {
    const set = asRecord(o["set"]);
    const map = asRecord(o["map"]);
    const chain = asRecord(o["chain"]);
    const rule = asRecord(o["rule"]);
    if (set) listing.sets.set(String(set["name"]), set);
    else if (map) listing.maps.set(String(map["name"]), map);
    else if (chain) listing.chains.set(String(chain["name"]), chain);
    else if (rule) {
      const c = String(rule["chain"]);
      listing.rules.set(c, (listing.rules.get(c) ?? 0) + 1);
    }
  }
  return listing;
}

/** The raw elements of a set or map, [] when it is absent. */
export function listedElements(listing: TableListing, decl: Pick<SetDecl, "kind" | "name">): NftValue[] {
  const elem = (decl.kind === "map" ? listing.maps : listing.sets).get(decl.name)?.["elem"];
  return Array.isArray(elem) ? elem : [];
}

export function setHealthy(listing: TableListing, d: SetDecl): boolean {
  const s = (d.kind === "map" ? listing.maps : listing.sets).get(d.name);
  if (!s) return false;
  const type = Array.isArray(s["type"]) ? s["type"].map(String) : [String(s["type"])];
  if (d.type && type.join(" . ") !== d.type.join(" . ")) return false;
  if (d.data !== undefined && String(s["map"]) !== d.data) return false;
  const flags = Array.isArray(s["flags"]) ? s["flags"].map(String) : [];
  return d.interval === undefined || flags.includes("interval") === d.interval;
}

export function chainHealthy(listing: TableListing, d: ChainDecl): boolean {
  const c = listing.chains.get(d.name);
  // Someone flushed or added to the chain: counting is enough to notice a flush (`netctx repair`).
  return (
    c !== undefined &&
    c["type"] === d.type &&
    c["hook"] === d.hook &&
    c["prio"] === d.prio &&
    c["policy"] === "accept" &&
    (listing.rules.get(d.name) ?? 0) === d.rules.length
  );
}

/** Any object of the part is in the table. */
export function partPresent(listing: TableListing, part: TablePart): boolean {
  return (
    part.sets.some((d) => (d.kind === "map" ? listing.maps : listing.sets).has(d.name)) ||
    part.chains.some((c) => listing.chains.has(c.name))
  );
}

/** Its objects are intact; with `elements`, its elements read back too (that costs a pass over them). */
export function partHealthy(listing: TableListing, part: TablePart, elements = true): boolean {
  return (
    part.sets.every((d) => setHealthy(listing, d)) &&
    part.chains.every((c) => chainHealthy(listing, c)) &&
    (!elements || (part.elementsHealthy?.(listing) ?? true))
  );
}

/** The lines that make a part's sets, maps and chains (with their rules) in a table that has none of them. */
export function objectLines(part: TablePart, table: string): string[] {
  const t = `${part.family} ${table}`;
  const lines = part.sets.map((d) => `add ${d.kind} ${t} ${d.name} { ${d.decl} }`);
  for (const c of part.chains) {
    lines.push(
      `add chain ${t} ${c.name} { type ${c.type} hook ${c.hook} priority ${c.prioText ?? c.prio}; policy accept; }`,
      ...c.rules.map((r) => `add rule ${t} ${c.name} ${r}`),
    );
  }
  return lines;
}

/** `verb element` lines, one per set, for the given elements (in their order, sets in first-seen order). */
export function elementLines(
  family: TableFamily,
  table: string,
  verb: "add" | "create" | "delete",
  elems: PartElement[],
): string[] {
  const bySet = new Map<string, string[]>();
  for (const e of elems) {
    const texts = bySet.get(e.set);
    if (texts) texts.push(e.text);
    else bySet.set(e.set, [e.text]);
  }
  return [...bySet].map(
    ([set, texts]) => `${verb} element ${family} ${table} ${set} { ${texts.join(", ")} }`,
  );
}
