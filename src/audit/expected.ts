/**
 * What each level promises: its row of the seed's table, measured on today's kernel, and the escapes it blocks.
 *
 * Today's kernel vs the 2006 table: the seed gives l2's routing cache as "i" (one shared cache, entries keyed
 * per context). Since Linux 3.6 there is no global route cache; PMTU exceptions and redirects live on the
 * nexthops of each namespace's FIB, so an l2 context's cache is its own instance: measured "v". README.md,
 * section "Today's kernel vs the 2006 table", has the measurement.
 */
import type { Level } from "../model/records.ts";

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

/**
 * The row one context is held to. An l3 context with an IPv4 default route of its own has an authoritative table,
 * and since issue 15 a device guard on its cgroup (kernel/bpf/socket-policy.ts) keeps its packets to that table's
 * devices: it sees the host's devices but cannot send through another network's (the IP_PKTINFO send of the
 * devices cell is refused), so its devices are "i". Without one its lookups fall through to the host's main table
 * by design, and it shares the host's devices with it: the seed's "-".
 */
export function expectedRow(level: Level, ownDefaultRoute4 = false): Row {
  // Only a context with a table of its own (l3) can have a default route of its own.
  return ownDefaultRoute4 ? { ...EXPECTED_ROWS[level], devices: "i" } : EXPECTED_ROWS[level];
}

export type EscapeProbe =
  | "spoofed-source-ip"
  | "spoofed-mac"
  | "arp-for-another"
  | "raw-socket"
  | "packet-socket"
  | "foreign-bind"
  | "other-network"
  | "internal-network"
  | "host-only-service"
  // Issue 15, hardening (src/audit/escapes.ts measures each):
  | "ptrace-other-context"
  | "signal-host-process"
  | "abstract-unix-other-context"
  | "abstract-unix-host"
  | "proc-sys-net-write"
  | "engine-api"
  | "setns-host-netns"
  | "device-table-bypass"
  | "rogue-ra"
  | "rogue-na"
  | "internal-to-host"
  | "internal-to-shared-stack"
  | "vsock-socket"
  // Netlink requests aimed at another network namespace by nsid (src/audit/netlink-nsid.ts):
  | "netlink-other-netns"
  // The host's file system (src/audit/host-fs.ts):
  | "host-file-write"
  | "host-daemon-socket"
  | "setuid-file"
  | "block-device";

/**
 * What no level lets root inside do, whatever its network model: reach into another context's or the host's
 * processes (ptrace, pidfd_getfd, signals), rewrite /proc/sys/net (for l2 its own netns's, which holds what the host
 * set for it, such as accept_ra=0; for the others the host's), talk to the engine that creates and removes contexts,
 * leave its network namespace, or open AF_VSOCK sockets (not a netns object: they reach the host), or act on another
 * network namespace by naming its nsid in a netlink request (an l2 context's namespace holds one for the host's,
 * the host's one for every l2 context's: links made, deleted, listed there, a macvlan on a link there). Nor, whatever
 * its level, reach past the network through the host's file system, which no netns separates: write a host
 * directory (a cron job, a unit file, a new netctx binary), connect to a host daemon's socket under /run (dbus,
 * systemd, container runtimes: connect needs no write access), leave a setuid file in the /tmp it shares with the
 * host (any host user would run it as root), or open the host's disks (a device node is writable whatever the
 * mount says).
 */
const EVERY_LEVEL: readonly EscapeProbe[] = [
  "ptrace-other-context",
  "signal-host-process",
  "proc-sys-net-write",
  "engine-api",
  "setns-host-netns",
  "vsock-socket",
  "netlink-other-netns",
  "host-file-write",
  "host-daemon-socket",
  "setuid-file",
  "block-device",
];

/**
 * What both shared-stack levels block: their sockets are confined, their loopback is their own address (issue 19,
 * kernel/bpf/jail-loopback.ts: a connect to 127.0.0.1 reaches the context itself, not the host's service), and the
 * abstract unix namespace is the host's.
 */
const SHARED_STACK: readonly EscapeProbe[] = [
  "spoofed-source-ip",
  "raw-socket",
  "packet-socket",
  "foreign-bind",
  "host-only-service",
  ...EVERY_LEVEL,
  "abstract-unix-other-context",
  "abstract-unix-host",
];

/**
 * Escapes a level promises to block. l2 contexts may open raw sockets (their own netns contains them) and reach
 * other networks through the host's routing (allowed unless a network is internal); shared-stack contexts share
 * the host's routing, so internal networks are reachable from them, but not its loopback: theirs is jailed to their
 * own address, so no level reaches a host-only service.
 * Shared-stack contexts also share the host's abstract unix namespace (it belongs to the netns), so they promise
 * not to reach the host's or another context's abstract sockets; an l2 context has a namespace of its own (reported
 * only). l3 promises its table cannot be sidestepped by binding a socket to another network's device; a socket
 * context has no table of its own and shares the host's devices by design (reported only). l2 contexts on a bridge
 * promise not to become another context's router (RA) or gateway (NA), and on an internal network to reach neither
 * host addresses other than their gateway nor the shared-stack contexts' addresses (local delivery, not forwarding).
 */
export const PROMISED_BLOCKED: Record<Level, readonly EscapeProbe[]> = {
  l2: [
    "spoofed-source-ip",
    "spoofed-mac",
    "arp-for-another",
    "foreign-bind",
    "internal-network",
    "host-only-service",
    ...EVERY_LEVEL,
    "rogue-ra",
    "rogue-na",
    "internal-to-host",
    "internal-to-shared-stack",
  ],
  l3: [...SHARED_STACK, "device-table-bypass"],
  socket: SHARED_STACK,
};
