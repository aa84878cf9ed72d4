/**
 * What anti-spoofing keeps in our tables (antispoof.ts says where and why): in each, a chain `antispoof` and sets
 * keyed by `ifname . value`, and the elements a guarded port owns in them.
 */
import { linkLocalOf, parseIp } from "../net/cidr.ts";
import {
  asRecord,
  elementLines,
  listedElements,
  type PartElement,
  type SetDecl,
  setHealthy,
  type TableFamily,
  type TableListing,
  type TablePart,
} from "./tables.ts";

export const ANTISPOOF_CHAIN = "antispoof";

export type PortKind = "bridge" | "routed";

export interface GuardedPort {
  /** Host-side interface the context sends from (a bridge port or a routed veth). */
  ifname: string;
  kind: PortKind;
  /** The context's MAC on that link. */
  mac: string;
  /** The context's addresses on that link, with or without a prefix length. */
  addresses: string[];
}

const set = (name: string, decl: string): SetDecl => ({ kind: "set", name, decl });
export const S_PORTS = set("as_ports", "type ifname;");
const S_MAC = set("as_mac", "type ifname . ether_addr;");
const S_IP4 = set("as_ip4", "type ifname . ipv4_addr;");
const S_IP6 = set("as_ip6", "type ifname . ipv6_addr;");
// nft 1.0.6 has no `icmpv6 taddr`: the ND target is the raw payload.
const S_ND = set("as_nd", "typeof iifname . @th,64,128;");

const ND_RULES = [
  "ip6 saddr :: icmpv6 type nd-neighbor-solicit iifname . @th,64,128 @as_nd accept",
  "ip6 saddr :: icmpv6 type { mld-listener-report, mld2-listener-report } accept",
];

/** Router-only messages: contexts route nothing, so none of theirs is legitimate (see antispoof.ts). */
const NOT_A_ROUTER4 = "icmp type redirect drop";
const NOT_A_ROUTER6 = "icmpv6 type { nd-router-advert, nd-redirect } drop";

function antispoofPart(family: TableFamily, hook: string, sets: SetDecl[], rules: string[]): TablePart {
  const part: TablePart = {
    job: "antispoof",
    family,
    sets,
    chains: [{ name: ANTISPOOF_CHAIN, type: "filter", hook, prio: -300, rules }],
    listed: (listing) =>
      part.sets.filter((s) => setHealthy(listing, s)).flatMap((s) => listedPortElements(listing, s)),
  };
  return part;
}

export const ANTISPOOF: Record<TableFamily, TablePart> = {
  bridge: antispoofPart(
    "bridge",
    "prerouting",
    [S_PORTS, S_MAC, S_IP4, S_IP6, S_ND],
    [
      "iifname != @as_ports accept",
      "iifname . ether saddr != @as_mac drop",
      "ether type arp iifname . arp saddr ether != @as_mac drop",
      "ether type arp iifname . arp saddr ip != @as_ip4 drop",
      "ether type arp accept",
      "ether type ip iifname . ip saddr != @as_ip4 drop",
      NOT_A_ROUTER4,
      "ether type ip accept",
      ...ND_RULES,
      "ether type ip6 iifname . ip6 saddr != @as_ip6 drop",
      "icmpv6 type nd-neighbor-advert iifname . @th,64,128 != @as_nd drop",
      NOT_A_ROUTER6,
      "ether type ip6 accept",
      // VLAN tags, PPPoE and anything else would carry IP past the checks above.
      "drop",
    ],
  ),
  inet: antispoofPart(
    "inet",
    "prerouting",
    [S_PORTS, S_MAC, S_IP4, S_IP6, S_ND],
    [
      "iifname != @as_ports accept",
      "iifname . ether saddr != @as_mac drop",
      "meta nfproto ipv4 iifname . ip saddr != @as_ip4 drop",
      NOT_A_ROUTER4,
      ...ND_RULES,
      "meta nfproto ipv6 iifname . ip6 saddr != @as_ip6 drop",
      "icmpv6 type nd-neighbor-advert iifname . @th,64,128 != @as_nd drop",
      NOT_A_ROUTER6,
    ],
  ),
  arp: antispoofPart(
    "arp",
    "input",
    [S_PORTS, S_MAC, S_IP4],
    [
      "iifname != @as_ports accept",
      "iifname . arp saddr ether != @as_mac drop",
      "iifname . arp saddr ip != @as_ip4 drop",
    ],
  ),
};

/** The tables a port of this kind is guarded in: bridge ports at the bridge hook, routed veths at inet and arp. */
export function tablesFor(kind: PortKind): TablePart[] {
  return kind === "bridge" ? [ANTISPOOF.bridge] : [ANTISPOOF.inet, ANTISPOOF.arp];
}

/** The elements `port` owns in each of `t`'s sets. */
export function portElements(t: TablePart, port: GuardedPort): PartElement[] {
  const q = `"${port.ifname}"`;
  const ips = [...port.addresses.map((a) => a.split("/")[0]!), linkLocalOf(port.mac)].map((a) =>
    parseIp(a, "address"),
  );
  const v4 = ips.filter((ip) => ip.family === 4);
  const v6 = ips.filter((ip) => ip.family === 6);
  const elems: Record<string, string[]> = {
    as_ports: [q],
    as_mac: [`${q} . ${port.mac.toLowerCase()}`],
    as_ip4: v4.map((ip) => `${q} . ${ip.text}`),
    as_ip6: v6.map((ip) => `${q} . ${ip.text}`),
    as_nd: v6.map((ip) => `${q} . 0x${ip.addr.toString(16).padStart(32, "0")}`),
  };
  return t.sets.flatMap((s) =>
    (elems[s.name] ?? []).map((text) => ({ set: s.name, text, owner: port.ifname })),
  );
}

/**
 * Lines adding `port`'s elements, in the tables of its kind or only in `only`. `create` for the as_ports element
 * refuses a leftover of the same name; `add` lets it be.
 */
export function addScript(
  port: GuardedPort,
  verb: "add" | "create",
  table: string,
  only?: TablePart,
): string[] {
  return (only ? [only] : tablesFor(port.kind)).flatMap((t) => {
    const elems = portElements(t, port);
    return [
      ...elementLines(
        t.family,
        table,
        verb,
        elems.filter((e) => e.set === S_PORTS.name),
      ),
      ...elementLines(
        t.family,
        table,
        "add",
        elems.filter((e) => e.set !== S_PORTS.name),
      ),
    ];
  });
}

export function removeScript(port: GuardedPort, table: string): string[] {
  return tablesFor(port.kind).flatMap((t) => elementLines(t.family, table, "delete", portElements(t, port)));
}

/** Lines deleting every element of `ifname` the listing shows in `t`'s sets. */
export function deleteScript(listing: TableListing, t: TablePart, ifname: string): string[] {
  return elementLines(
    t.family,
    listing.table.name,
    "delete",
    t.sets.flatMap((s) => listedPortElements(listing, s, ifname)),
  );
}

/** The elements the listing shows in `t`'s sets, by the port they belong to (one pass over them). */
export function listedByPort(listing: TableListing, t: TablePart): Map<string, PartElement[]> {
  const out = new Map<string, PartElement[]>();
  for (const e of t.sets.flatMap((s) => listedPortElements(listing, s))) {
    const mine = out.get(e.owner!);
    if (mine) mine.push(e);
    else out.set(e.owner!, [e]);
  }
  return out;
}

/** The ports in a table's as_ports set. */
export function listedPorts(listing: TableListing): Set<string> {
  return new Set(setComponents(listing, S_PORTS).map((e) => e[0]!));
}

/** Elements of one set as their components: `["nc-web"]`, `["nc-web", "10.1.0.2"]`. */
export function setComponents(listing: TableListing, s: SetDecl): string[][] {
  return listedElements(listing, s).map((raw) => {
    const val = asRecord(raw)?.["elem"] ? (asRecord(asRecord(raw)?.["elem"])?.["val"] ?? null) : raw;
    const concat = asRecord(val)?.["concat"];
    return Array.isArray(concat) ? concat.map(String) : [String(val)];
  });
}

/** A set's elements as they are written back, only `port`'s when given. */
function listedPortElements(listing: TableListing, s: SetDecl, port?: string): PartElement[] {
  const out: PartElement[] = [];
  for (const e of setComponents(listing, s)) {
    if (port !== undefined && e[0] !== port) continue;
    out.push({ set: s.name, text: e.map((v, i) => (i === 0 ? `"${v}"` : v)).join(" . "), owner: e[0]! });
  }
  return out;
}
