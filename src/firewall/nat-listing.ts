/**
 * The NAT part read back from the kernel's listing of `table inet netctx`: its elements in the model's terms, and
 * the model itself from the registry sets (a one-shot CLI learns a network's subnets and flags from the kernel).
 */

import { parseIp } from "../net/cidr.ts";
import {
  type Cidr,
  cidrElem,
  cidrFromKey,
  cidrKey,
  concatElem,
  type Elem,
  type Elements,
  type Family,
  ifElem,
  type Model,
  pairElem,
  sameIfElem,
} from "./nat-elements.ts";
import { NAT_SETS } from "./nat-objects.ts";
import type { NftValue } from "./nft.ts";
import { asRecord, listedElements, type TableListing } from "./tables.ts";

export interface NatListing {
  exists: boolean;
  /** Every element of our sets reads back into the model (a foreign one makes the table rebuilt). */
  parsed: boolean;
  elements: Elements;
}

const read = new WeakMap<TableListing, NatListing>();

/** The NAT sets' elements of a listing (read once per listing). */
export function natListing(table: TableListing): NatListing {
  const known = read.get(table);
  if (known) return known;
  const elements: Elements = new Map();
  let parsed = true;
  for (const def of NAT_SETS) {
    if (!table.sets.has(def.name)) continue;
    const family: Family | null = def.type.includes("ipv4_addr")
      ? 4
      : def.type.includes("ipv6_addr")
        ? 6
        : null;
    const elems = new Map<string, Elem>();
    for (const raw of listedElements(table, def)) {
      const e = parseElem(raw, family);
      if (e) elems.set(e.key, e);
      else parsed = false;
    }
    elements.set(def.name, elems);
  }
  const nat: NatListing = { exists: table.exists, parsed, elements };
  read.set(table, nat);
  return nat;
}

/** The networks and interfaces the registry sets hold. */
export function modelOf(listing: NatListing): Model {
  const model: Model = { networks: new Map(), ifaces: new Map() };
  const has = (set: string, c: Cidr) => listing.elements.get(set)?.has(cidrKey(c)) ?? false;
  for (const f of [4, 6] as const) {
    for (const e of listing.elements.get(`nets${f}`)?.values() ?? []) {
      if (e.comment === undefined) continue;
      const c = cidrFromKey(e.key);
      if (!c) continue;
      const rec = model.networks.get(e.comment) ?? { subnets: [], nat: false, internal: false };
      rec.subnets.push(c);
      rec.nat ||= has(`nat${f}`, c);
      rec.internal ||= has(`internal${f}`, c);
      model.networks.set(e.comment, rec);
    }
  }
  for (const e of listing.elements.get("ifaces")?.values() ?? []) {
    if (e.comment !== undefined && model.networks.has(e.comment)) model.ifaces.set(e.key.slice(3), e.comment);
  }
  return model;
}

function parseElem(raw: NftValue, family: Family | null): Elem | null {
  let val: NftValue = raw;
  let comment: string | undefined;
  const wrapped = asRecord(asRecord(raw)?.["elem"]);
  if (wrapped) {
    val = wrapped["val"] ?? null;
    if (typeof wrapped["comment"] === "string") comment = wrapped["comment"];
  }
  const concat = asRecord(val)?.["concat"];
  let elem: Elem | null;
  if (Array.isArray(concat)) {
    const [name, second] = concat;
    if (name === undefined || second === undefined) elem = null;
    else if (typeof name !== "string") {
      const a = family === null ? null : parseAddrValue(name, family);
      const b = family === null ? null : parseAddrValue(second, family);
      elem = a && b ? pairElem(a, b) : null;
    } else if (family === null) elem = second === name ? sameIfElem(name) : null;
    else {
      const c = parseAddrValue(second, family);
      elem = c ? concatElem(name, c) : null;
    }
  } else if (family === null) {
    elem = typeof val === "string" ? ifElem(val) : null;
  } else {
    const c = parseAddrValue(val, family);
    elem = c ? cidrElem(c) : null;
  }
  if (elem && comment !== undefined) elem.comment = comment;
  return elem;
}

/** nft prints an interval element as a bare address (host), `{prefix:{addr,len}}` or `{range:[lo,hi]}`. */
function parseAddrValue(v: NftValue, family: Family): Cidr | null {
  const bits = family === 4 ? 32 : 128;
  if (typeof v === "string") {
    const addr = parseAddr(v, family);
    return addr === null ? null : { family, addr, len: bits };
  }
  const rec = asRecord(v);
  const prefix = asRecord(rec?.["prefix"]);
  if (prefix && typeof prefix["addr"] === "string" && typeof prefix["len"] === "number") {
    const addr = parseAddr(prefix["addr"], family);
    return addr === null ? null : { family, addr, len: prefix["len"] };
  }
  const range = rec?.["range"];
  if (Array.isArray(range) && typeof range[0] === "string" && typeof range[1] === "string") {
    const lo = parseAddr(range[0], family);
    const hi = parseAddr(range[1], family);
    if (lo === null || hi === null) return null;
    const size = hi - lo + 1n;
    // Only a range that is exactly one prefix maps back onto our model; anything else is foreign and removed.
    const len = bits - (size.toString(2).length - 1);
    if (size > 0n && (size & (size - 1n)) === 0n && (lo & (size - 1n)) === 0n)
      return { family, addr: lo, len };
    return null;
  }
  return null;
}

/** An address as nft prints it, through the one address codec; null for anything else (a foreign element). */
function parseAddr(text: string, family: Family): bigint | null {
  try {
    const ip = parseIp(text, "address");
    return ip.family === family ? ip.addr : null;
  } catch {
    return null;
  }
}
