/**
 * Which nft tables a store's firewall owns (issue 17: a store owns only what it marked). Several state stores on one
 * host (`--state-dir A`, `--state-dir B`) each keep their own tables, so one store's gc, repair or failure cleanup,
 * which make our tables hold exactly that store's records, never sees another store's elements to take out.
 *
 * The name: the first store to claim `netctx` keeps it (a host with one store sees `table inet netctx`, `bridge
 * netctx`, `arp netctx`, as before stores were marked). The claim is the table's comment, the store's mark
 * (`netctx store ID DIR`, model/store-mark.ts), written whenever a table is made anew (parts.ts: a table listed
 * absent is made with `create`, so a store that lost the race to another fails instead of deleting its table).
 * A store that finds `netctx` claimed by another store's id in any family uses `netctx-<first 8 hex of its id>` in
 * every family; one whose own `netctx-<id>` tables exist keeps them. A `netctx` table without a comment (made
 * before marks existed) is taken as the claimer's own. The Host decides once (host.ts), and again only while no
 * table of that name exists yet (the claim is not made until a table is): a lookup is `list tables` and a terse
 * listing (no elements) of each `netctx` table, never a listing per context.
 *
 * The rules of two stores' tables compose, because each table's chains match only its own sets' elements: NAT
 * masquerades only the subnets in its own nat4/nat6 sets, an internal network's drop matches only its own
 * `internal_ifs`, anti-spoofing starts with `iifname != @as_ports accept`, so a port of another store passes this
 * table's chain untouched and is judged by its own table's, and publishing DNATs only the host ports in its own maps.
 * Two tables at the same hook both see every packet, and each acts on its own only. What they cannot share is an
 * address space: a network whose subnet overlaps another store's network is refused (firewall.ts, addNetwork).
 */
import { parseStoreMark, type StoreMark, storeMarkText } from "../model/store-mark.ts";
import type { Nft } from "./nft.ts";
import { asRecord, CLAIMED_NAME, FAMILIES, type TableFamily, type TableRef } from "./tables.ts";

/** nft refuses a comment longer than this (NFTNL_UDATA_COMMENT_MAXLEN). */
const COMMENT_MAX = 128;

/** The comment that claims a table for `owner`: its mark, without the directory when that does not fit. */
export function tableComment(owner: StoreMark): string {
  const full = storeMarkText(owner);
  // nft's quoted strings end at the next quote; a directory it cannot carry is left out (the id is what counts).
  return Buffer.byteLength(full) <= COMMENT_MAX && !/["\\\p{Cc}]/u.test(full)
    ? full
    : storeMarkText({ id: owner.id });
}

/** A store's own name, for when `netctx` is another's. */
export function ownName(storeId: string): string {
  return `${CLAIMED_NAME}-${storeId.slice(0, 8)}`;
}

/** Whether `name` may be some store's tables' name (`netctx`, `netctx-<8 hex>`). */
export function isStoreTableName(name: string): boolean {
  return name === CLAIMED_NAME || /^netctx-[0-9a-f]{8}$/.test(name);
}

/** Our families' tables the kernel holds now, by name. */
export function listedTables(nft: Nft): { family: TableFamily; name: string }[] {
  return (nft.list(["tables"]) ?? []).flatMap((o) => {
    const t = asRecord(o["table"]);
    const family = String(t?.["family"]) as TableFamily;
    return t && FAMILIES.includes(family) ? [{ family, name: String(t["name"]) }] : [];
  });
}

/**
 * The store whose mark a table's comment carries: null when there is no such table, undefined when it has no
 * mark (legacy). nft 1.0.6 lists a table's comment only as text: a terse listing (no elements) of the table.
 */
export function tableClaimer(nft: Nft, family: TableFamily, name: string): StoreMark | undefined | null {
  const text = nft.listTerse(["table", family, name]);
  if (text === null) return null;
  // The table's own comment is the line right after `table FAMILY NAME {` (a set's or chain's is indented deeper).
  const line = text.split("\n")[1] ?? "";
  const m = line.match(/^\tcomment "([^"]*)"$/);
  return m ? parseStoreMark(m[1]) : undefined;
}

/** The tables a store owns, and whether that is settled (a table of the name exists, so the claim is made). */
export interface TableClaim {
  table: TableRef;
  settled: boolean;
}

/** Decide the name of `owner`'s tables (see the header). */
export function claimTables(nft: Nft, owner: StoreMark): TableClaim {
  const comment = tableComment(owner);
  const tables = listedTables(nft);
  const own = ownName(owner.id);
  const as = (name: string, settled: boolean): TableClaim => ({
    table: { name, comment, store: owner.id },
    settled,
  });
  if (tables.some((t) => t.name === own)) return as(own, true);
  const claimed = tables.filter((t) => t.name === CLAIMED_NAME);
  for (const t of claimed) {
    const claimer = tableClaimer(nft, t.family, t.name);
    if (claimer && claimer.id !== owner.id) return as(own, true);
  }
  return as(CLAIMED_NAME, claimed.length > 0);
}
