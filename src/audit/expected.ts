/**
 * What each level promises: its row of the seed's table, measured on today's kernel, and the escapes it blocks.
 *
 * Today's kernel vs the 2006 table: the seed gives l2's routing cache as "i" (one shared cache, entries keyed
 * per context). Since Linux 3.6 there is no global route cache; PMTU exceptions and redirects live on the
 * nexthops of each namespace's FIB, so an l2 context's cache is its own instance: measured "v". README.md,
 * section "Today's kernel vs the 2006 table", has the measurement.
 */
import type { Level } from "../state/store.ts";

export type Cell = "v" | "i" | "-";
export type CellKey = "devices" | "routingTables" | "routingCache" | "sockets";
export type Row = Record<CellKey, Cell>;

export const CELL_KEYS: readonly CellKey[] = ["devices", "routingTables", "routingCache", "sockets"];

/** The seed's table as published (for the README comparison and the report's footnote). */
export const SEED_ROWS: Record<Level, Row> = {
  l2: { devices: "v", routingTables: "v", routingCache: "i", sockets: "v" },
  l3: { devices: "-", routingTables: "i", routingCache: "-", sockets: "i" },
  socket: { devices: "-", routingTables: "-", routingCache: "-", sockets: "i" },
};

/** What the audit expects on today's kernel: the seed's rows with l2's routing cache per namespace. */
export const EXPECTED_ROWS: Record<Level, Row> = {
  l2: { ...SEED_ROWS.l2, routingCache: "v" },
  l3: SEED_ROWS.l3,
  socket: SEED_ROWS.socket,
};

export type EscapeProbe =
  | "spoofed-source-ip"
  | "spoofed-mac"
  | "arp-for-another"
  | "raw-socket"
  | "packet-socket"
  | "foreign-bind"
  | "other-network"
  | "internal-network"
  | "host-only-service";

/**
 * Escapes a level promises to block. l2 contexts may open raw sockets (their own netns contains them) and reach
 * other networks through the host's routing (allowed unless a network is internal); shared-stack contexts share
 * the host's loopback and routing, so host-only services and internal networks are reachable from them.
 */
export const PROMISED_BLOCKED: Record<Level, readonly EscapeProbe[]> = {
  l2: [
    "spoofed-source-ip",
    "spoofed-mac",
    "arp-for-another",
    "foreign-bind",
    "internal-network",
    "host-only-service",
  ],
  l3: ["spoofed-source-ip", "raw-socket", "packet-socket", "foreign-bind"],
  socket: ["spoofed-source-ip", "raw-socket", "packet-socket", "foreign-bind"],
};
