/**
 * The parts that keep objects in our tables, registered with the one owner (firewall.ts), as netavark's
 * FirewallDriver holds NAT, isolation and port forwarding: NAT and internal networks (nat-*.ts), anti-spoofing
 * (antispoof-objects.ts), publishing (publish-objects.ts) and the overlay's member guard (overlay-members-objects.ts).
 *
 * A table in which any part's object is missing or damaged (a flush, a deleted set, a chain someone added to) is
 * rebuilt whole in one transaction: every part in it comes back with its objects, and with the elements the
 * caller gives for it or, by default, those the listing still holds in its intact sets. So one part's repair never
 * wipes another's elements and leaves them for gc to put back.
 */

import { ANTISPOOF } from "./antispoof-objects.ts";
import { desiredElements, partElements } from "./nat-elements.ts";
import { modelOf, natListing } from "./nat-listing.ts";
import { NAT_CHAINS, NAT_SETS } from "./nat-objects.ts";
import { DIRECT_SETS, listedDirect } from "./overlay-direct-objects.ts";
import { OVERLAY_MEMBERS } from "./overlay-members-objects.ts";
import { PUBLISH } from "./publish-objects.ts";
import {
  elementLines,
  objectLines,
  type PartElement,
  partHealthy,
  partPresent,
  type TableListing,
  type TablePart,
} from "./tables.ts";

export type Job = TablePart["job"];

export const NAT: TablePart = {
  job: "nat",
  family: "inet",
  // The publish chains read its intra sets: it is made whenever the inet table is.
  base: true,
  // Its forward chain reads the direct-routing sets, so they are made with it; their elements are the overlay data
  // path's (overlay-direct.ts), which the registry cannot derive: a rebuild keeps them as listed.
  sets: [...NAT_SETS, ...DIRECT_SETS],
  chains: NAT_CHAINS,
  elementsHealthy: (listing) => natListing(listing).parsed,
  // The registry sets say which networks and interfaces there are; the rest follows from them.
  listed: (listing) => [
    ...partElements(desiredElements(modelOf(natListing(listing)))),
    ...listedDirect(listing),
  ],
};

/** In the order a rebuild makes them: that is the order a fresh host made them in, so a listing reads the same. */
const PARTS: readonly TablePart[] = [
  NAT,
  ANTISPOOF.inet,
  PUBLISH,
  OVERLAY_MEMBERS,
  ANTISPOOF.bridge,
  ANTISPOOF.arp,
];

/**
 * The parts a table holds or must hold: those `needed`, those with an object there, and the base part of a table
 * that has any.
 */
export function includedParts(listing: TableListing, needed: readonly Job[]): TablePart[] {
  const parts = PARTS.filter((p) => p.family === listing.family);
  const included = parts.filter((p) => needed.includes(p.job) || partPresent(listing, p));
  if (included.length === 0) return [];
  return parts.filter((p) => p.base || included.includes(p));
}

/**
 * The inet table holds no part but NAT (the base) and no overlay route (direct-routing elements, which no record
 * derives): with no network recorded, nothing in it is needed (gc's test; its registry may hold a crashed
 * operation's leftovers, which go with it).
 */
export function inetOnlyNat(listing: TableListing): boolean {
  if (!listing.exists || listing.family !== "inet") return false;
  if (PARTS.some((p) => p !== NAT && p.family === "inet" && partPresent(listing, p))) return false;
  return listedDirect(listing).length === 0;
}

/**
 * The inet table holds nothing anyone needs: inetOnlyNat, and NAT's registry sets are empty (no network or
 * interface). Its base chains still hook every packet of the host (input, forward, postrouting): after a store's
 * last network it goes (`network rm`, gc), and the next network makes it anew (a table listed absent is made whole).
 */
export function inetIdle(listing: TableListing): boolean {
  return inetOnlyNat(listing) && NAT.listed(listing).length === 0;
}

/** Every part's objects intact; with `elements`, their elements read back too (see TablePart.elementsHealthy). */
export function tableHealthy(listing: TableListing, parts: readonly TablePart[], elements = true): boolean {
  return listing.exists && parts.every((p) => partHealthy(listing, p, elements));
}

/** A port (anti-spoofing) or context (publishing) whose elements the caller writes anew: a rebuild leaves them out. */
export interface Except {
  job: Job;
  owner: string;
}

/**
 * Lines that make the table anew with these parts: their objects, then for each part the elements given for its
 * job, or else the ones the listing holds (less `except`'s).
 */
export function rebuildLines(
  listing: TableListing,
  parts: readonly TablePart[],
  elements: Partial<Record<Job, PartElement[]>> = {},
  except?: Except,
): string[] {
  const { name, comment } = listing.table;
  const t = `${listing.family} ${name}`;
  // The comment claims the table for its store (naming.ts). A table listed absent is made with `create`: should
  // another store have made one of that name since, the transaction fails whole instead of deleting it.
  const made = `${t}${comment === undefined ? "" : ` { comment "${comment}"; }`}`;
  // Recreating in one transaction: `add` makes `delete` safe when the table is absent.
  const lines = listing.exists
    ? [`add table ${t}`, `delete table ${t}`, `add table ${made}`]
    : [`create table ${made}`];
  for (const p of parts) lines.push(...objectLines(p, name));
  for (const p of parts) {
    const given = elements[p.job];
    const elems = given ?? p.listed(listing).filter((e) => p.job !== except?.job || e.owner !== except.owner);
    lines.push(...elementLines(listing.family, name, "add", elems));
  }
  return lines;
}

/**
 * The lines that mend a table before a part changes its elements: none when every part's objects in it (and each
 * `needed` one's) are intact; the objects of a needed part the table lacks altogether (a network's first port, a
 * host's first publication: nothing else changes); else the whole table rebuilt (see the header), `except` as in
 * rebuildLines. Other parts' elements are not read here: a fast path's fallback must not pay O(elements) for them.
 */
export function repairLines(listing: TableListing, needed: readonly Job[], except?: Except): string[] {
  const parts = includedParts(listing, needed);
  if (parts.length === 0) return [];
  const absent = parts.filter((p) => !partPresent(listing, p));
  const present = parts.filter((p) => !absent.includes(p));
  if (listing.exists && !absent.some((p) => p.base) && tableHealthy(listing, present, false))
    return absent.flatMap((p) => objectLines(p, listing.table.name));
  return rebuildLines(listing, parts, {}, except);
}
