/**
 * The NAT part's model (networks with their subnets and flags, interfaces by network) and the set elements it
 * wants (nat-objects.ts says what each set means). Addresses go through the one codec (net/cidr.ts), interface
 * names through the one name check (net/ifname.ts).
 */
import { invalid } from "../errors.ts";
import { familyBits, formatIp, parseCidr as parseCidrText, parseIp } from "../net/cidr.ts";
import { ifnameProblem } from "../net/ifname.ts";
import { NAT_SETS } from "./nat-objects.ts";
import type { PartElement } from "./tables.ts";

/** A network as the firewall sees it. */
export interface FirewallNetwork {
  name: string;
  subnets: string[];
  nat: boolean;
  internal: boolean;
}

export type Family = 4 | 6;

export interface Cidr {
  family: Family;
  addr: bigint;
  len: number;
}

export interface NetRecord {
  subnets: Cidr[];
  nat: boolean;
  internal: boolean;
}

export interface Model {
  networks: Map<string, NetRecord>;
  /** ifname -> network name */
  ifaces: Map<string, string>;
}

/** One desired or present element: `text` is what nft accepts, `key` compares across nft's output forms. */
export interface Elem {
  key: string;
  text: string;
  comment?: string;
}

/** Elements by set name, each set by element key. */
export type Elements = Map<string, Map<string, Elem>>;

/** The model of exactly these networks and interfaces (ifname -> network); interfaces of unknown networks drop. */
export function natModel(networks: readonly FirewallNetwork[], ifaces: ReadonlyMap<string, string>): Model {
  const model: Model = { networks: new Map(), ifaces: new Map() };
  for (const n of networks) {
    validateNetworkName(n.name);
    const subnets = dedupe(n.subnets.map((s, i) => parseCidr(s, `subnets[${i}]`)));
    model.networks.set(n.name, { subnets, nat: n.nat, internal: n.internal });
  }
  for (const [ifname, network] of ifaces) {
    validateIfname(ifname);
    if (model.networks.has(network)) model.ifaces.set(ifname, network);
  }
  return model;
}

export function desiredElements(model: Model): Elements {
  const out: Elements = new Map(NAT_SETS.map((s) => [s.name, new Map()]));
  const put = (set: string, e: Elem) => out.get(set)?.set(e.key, e);
  for (const [name, rec] of model.networks) {
    for (const c of rec.subnets) {
      const f = c.family;
      put(`nets${f}`, { ...cidrElem(c), comment: name });
      if (rec.nat) put(`nat${f}`, cidrElem(c));
      if (rec.internal) put(`internal${f}`, cidrElem(c));
      // Every pair of the network's subnets of one family: traffic between two of them stays in the network.
      for (const d of rec.subnets) if (d.family === f) put(`intra${f}`, pairElem(c, d));
    }
  }
  for (const [ifname, network] of model.ifaces) {
    const rec = model.networks.get(network);
    if (!rec) continue;
    put("ifaces", { ...ifElem(ifname), comment: network });
    if (!rec.internal) continue;
    put("internal_ifs", ifElem(ifname));
    put("same_if", sameIfElem(ifname));
    for (const c of rec.subnets) put(`local${c.family}`, concatElem(ifname, c));
  }
  return out;
}

/** An element as a script adds it, comment included. */
export function elemText(e: Elem): string {
  return e.comment === undefined ? e.text : `${e.text} comment "${e.comment}"`;
}

/** The elements as the owner's rebuild adds them. */
export function partElements(elements: Elements): PartElement[] {
  return [...elements].flatMap(([set, elems]) =>
    [...elems.values()].map((e) => ({ set, text: elemText(e) })),
  );
}

export function cidrElem(c: Cidr): Elem {
  return { key: cidrKey(c), text: formatCidr(c) };
}

export function ifElem(ifname: string): Elem {
  return { key: `if:${ifname}`, text: `"${ifname}"` };
}

export function sameIfElem(ifname: string): Elem {
  return { key: `if:${ifname}|if:${ifname}`, text: `"${ifname}" . "${ifname}"` };
}

export function pairElem(a: Cidr, b: Cidr): Elem {
  return { key: `${cidrKey(a)}|${cidrKey(b)}`, text: `${formatCidr(a)} . ${formatCidr(b)}` };
}

export function concatElem(ifname: string, c: Cidr): Elem {
  return { key: `if:${ifname}|${cidrKey(c)}`, text: `"${ifname}" . ${formatCidr(c)}` };
}

// ---------------------------------------------------------------------------------------------------------
// names and addresses

export function validateNetworkName(name: string): void {
  // The name travels inside an nft comment string (max 128 bytes) in a script: no quotes, no escapes.
  if (!/^[\x21-\x7e]{1,100}$/.test(name) || name.includes('"') || name.includes("\\")) {
    throw invalid("network", `"${name}" must be 1-100 printable characters without quotes or backslashes`);
  }
}

/** The kernel's name rule (net/ifname.ts), and nothing an nft script string could not carry. */
export function validateIfname(ifname: string): void {
  const problem = ifnameProblem(ifname);
  if (problem) throw invalid("ifname", problem);
  if (!/^[\x21-\x7e]+$/.test(ifname) || /["\\]/.test(ifname))
    throw invalid(
      "ifname",
      `"${ifname}" cannot stand in an nft script (printable ASCII, no quotes or backslashes)`,
    );
}

/** "ADDRESS/PREFIX" (host bits cleared: "10.50.0.1/24", gateway notation, is the subnet 10.50.0.0/24) or a host. */
export function parseCidr(text: string, field: string): Cidr {
  if (!text.includes("/")) {
    const ip = parseIp(text, field);
    return { family: ip.family, addr: ip.addr, len: familyBits(ip.family) };
  }
  const c = parseCidrText(text, field);
  return { family: c.family, addr: c.network, len: c.prefix };
}

function mask(family: Family, len: number): bigint {
  const bits = family === 4 ? 32n : 128n;
  return ((1n << bits) - 1n) ^ ((1n << (bits - BigInt(len))) - 1n);
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.family, c.addr)}/${c.len}`;
}

export function cidrKey(c: Cidr): string {
  return `v${c.family}:${c.addr.toString(16)}/${c.len}`;
}

export function cidrFromKey(key: string): Cidr | null {
  const m = key.match(/^v([46]):([0-9a-f]+)\/(\d+)$/);
  if (!m) return null;
  return { family: m[1] === "4" ? 4 : 6, addr: BigInt(`0x${m[2]}`), len: Number(m[3]) };
}

export function sameCidr(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.addr === b.addr && a.len === b.len;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const len = Math.min(a.len, b.len);
  const m = mask(a.family, len);
  return (a.addr & m) === (b.addr & m);
}

export function dedupe(cidrs: Cidr[]): Cidr[] {
  return cidrs.filter((c, i) => cidrs.findIndex((d) => sameCidr(c, d)) === i);
}
