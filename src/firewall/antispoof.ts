/**
 * Anti-spoofing for l2 contexts (CNI's spoofcheck as its own unit): a context's host-side port may send only
 * its own MAC and addresses, and ARP/ND only for its own addresses.
 *
 * Where:
 *  - bridge ports: `table bridge netctx`, chain `antispoof` at bridge prerouting. It sees every frame a port
 *    sends, forwarded or for the host, before br_netfilter hands IP packets to the inet hooks.
 *  - routed networks' host-side veths are not bridge ports: `table inet netctx`, chain `antispoof` at
 *    prerouting (raw priority, before conntrack), and `table arp netctx` for ARP, which no inet hook sees.
 *    The inet chain and its `as_*` sets are unknown to Firewall: its health check and its element diff
 *    ignore them (a Firewall rebuild after a flush drops them; the next guard re-creates the chain).
 *
 * Every port shares the same fixed rules; a port only adds elements to sets keyed by `ifname . value`, so
 * the rule count does not grow with the number of contexts. Ports not in `as_ports` are never touched.
 * The chains and sets come with the first network that needs them (prepareAntispoof) and stay while such a
 * network does, so a context coming and going costs one element transaction each way; releaseIdleTables()
 * drops them with the last network.
 * nft 1.0.6 has no `icmpv6 taddr`: the ND target is the raw payload `@th,64,128` in a `typeof` set (as_nd).
 * DAD (neighbour solicitation from ::) and MLD reports from :: stay allowed, the former only for the
 * port's own addresses.
 * A context is never a router: its Router Advertisements and redirects (ICMPv6 134 and 137, ICMPv4 5) are dropped,
 * whatever their source. Without this, root in one context could send an RA with its own link-local address and
 * become every other context's default router (Docker's CVE-2020-13401); the contexts' accept_ra=0
 * (networks/context-sysctls.ts) is the second line, for an RA that reaches them from elsewhere.
 */
import { NetctxError } from "../errors.ts";
import { type Host, removalQueue } from "../host.ts";
import type { Rtnl } from "../kernel/rtnl.ts";
import type { Attachment } from "../model/attachment.ts";
import { linkLocalOf, parseIp } from "../net/cidr.ts";
import type { NetworkRecord } from "../state/store.ts";
import { Nft, type NftObject, type NftValue } from "./nft.ts";

export const ANTISPOOF_CHAIN = "antispoof";
const TABLE = "netctx";

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

interface SetDef {
  name: string;
  decl: string;
}

interface TableDef {
  family: "bridge" | "inet" | "arp";
  hook: string;
  sets: SetDef[];
  rules: string[];
}

const S_PORTS = { name: "as_ports", decl: "type ifname;" };
const S_MAC = { name: "as_mac", decl: "type ifname . ether_addr;" };
const S_IP4 = { name: "as_ip4", decl: "type ifname . ipv4_addr;" };
const S_IP6 = { name: "as_ip6", decl: "type ifname . ipv6_addr;" };
const S_ND = { name: "as_nd", decl: "typeof iifname . @th,64,128;" };

const ND_RULES = [
  "ip6 saddr :: icmpv6 type nd-neighbor-solicit iifname . @th,64,128 @as_nd accept",
  "ip6 saddr :: icmpv6 type { mld-listener-report, mld2-listener-report } accept",
];

/** Router-only messages: contexts route nothing, so none of theirs is legitimate (see the module comment). */
const NOT_A_ROUTER4 = "icmp type redirect drop";
const NOT_A_ROUTER6 = "icmpv6 type { nd-router-advert, nd-redirect } drop";

const TABLES: Record<"bridge" | "inet" | "arp", TableDef> = {
  bridge: {
    family: "bridge",
    hook: "prerouting",
    sets: [S_PORTS, S_MAC, S_IP4, S_IP6, S_ND],
    rules: [
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
  },
  inet: {
    family: "inet",
    hook: "prerouting",
    sets: [S_PORTS, S_MAC, S_IP4, S_IP6, S_ND],
    rules: [
      "iifname != @as_ports accept",
      "iifname . ether saddr != @as_mac drop",
      "meta nfproto ipv4 iifname . ip saddr != @as_ip4 drop",
      NOT_A_ROUTER4,
      ...ND_RULES,
      "meta nfproto ipv6 iifname . ip6 saddr != @as_ip6 drop",
      "icmpv6 type nd-neighbor-advert iifname . @th,64,128 != @as_nd drop",
      NOT_A_ROUTER6,
    ],
  },
  arp: {
    family: "arp",
    hook: "input",
    sets: [S_PORTS, S_MAC, S_IP4],
    rules: [
      "iifname != @as_ports accept",
      "iifname . arp saddr ether != @as_mac drop",
      "iifname . arp saddr ip != @as_ip4 drop",
    ],
  },
};

function tablesFor(kind: PortKind): TableDef[] {
  return kind === "bridge" ? [TABLES.bridge] : [TABLES.inet, TABLES.arp];
}

/** Anti-spoofing applies to bridge and routed networks unless the network was created with --no-antispoof. */
export function antispoofEnabled(net: NetworkRecord): boolean {
  return (net.driver === "bridge" || net.driver === "routed") && net.options["antispoof"] !== false;
}

/**
 * Allow `port` to send as itself and nothing else. Serialised with every other firewall change.
 * The usual case is one transaction of exact elements, with no listing: listing our tables costs O(contexts)
 * per change. `create` (not `add`) of the port's as_ports element makes that transaction fail whole when a
 * leftover of the same port name is still there (a crash between guard and unguard); then, as when a table
 * or set is missing, the slow path lists, rebuilds and purges.
 */
export function guardPort(host: Host, port: GuardedPort): void {
  const batch = guardBatches.get(host);
  if (batch) {
    batch.set(port.ifname, port);
    return;
  }
  host.firewall(() => {
    const nft = new Nft();
    if (tryGuardExactly(host, nft, [port])) return;
    const lines: string[] = [];
    for (const t of tablesFor(port.kind)) {
      const objs = nft.list(["table", t.family, TABLE]);
      const rebuild = ensureScript(objs, t);
      lines.push(
        ...rebuild,
        ...(rebuild.length ? [] : deleteScript(objs, t, port.ifname)),
        ...addScript(port, "add", t),
      );
    }
    nft.apply(lines.join("\n"));
  });
}

/**
 * Remove every element of `ifname` from our anti-spoofing sets; missing tables and elements are fine.
 * Given the port as it was guarded, its exact elements are queued and go with others in one transaction
 * (host.defer): deleting set elements costs a kernel grace period (~10 ms here) per transaction, not per
 * element. Waiting is safe: the elements name an interface, and the next port of that name either takes
 * them out in its own guard transaction or finds them in the way. Without the port, the listing path runs now.
 */
export function unguardPort(host: Host, ifname: string, guarded?: GuardedPort): void {
  // Guarded in an open batch: its elements never reached the kernel.
  if (guardBatches.get(host)?.delete(ifname)) return;
  if (guarded) {
    staleGuards.put(host, ifname, guarded);
    return;
  }
  host.firewall(() => removeListed(new Nft(), [ifname]));
}

const guardBatches = new WeakMap<Host, Map<string, GuardedPort>>();

/**
 * Run `fn` with every guardPort() inside it collected, then guard them all in one nft transaction (netctx apply:
 * one commit per batch instead of one per context). The caller keeps the ports' contexts from running anything
 * until this returns. If the batch transaction fails, each port takes the one-by-one path.
 */
export function withGuardBatch<T>(host: Host, fn: () => T): T {
  if (guardBatches.has(host)) return fn();
  const batch = new Map<string, GuardedPort>();
  guardBatches.set(host, batch);
  let result: T;
  try {
    result = fn();
  } finally {
    guardBatches.delete(host);
  }
  const ports = [...batch.values()];
  let guarded = false;
  host.firewall(() => {
    guarded = tryGuardExactly(host, new Nft(), ports);
  });
  if (!guarded) for (const port of ports) guardPort(host, port);
  return result;
}

/**
 * The fast path of guarding: one transaction of exact elements, no listing. Elements of the same port names still
 * queued for removal (staleGuards) go out in it first. False when the kernel refuses it whole (a table or set
 * missing, a leftover in the way): then nothing changed, and the caller takes the listing path.
 */
function tryGuardExactly(host: Host, nft: Nft, ports: GuardedPort[]): boolean {
  const previous = ports.flatMap((p) => staleGuards.take(host, p.ifname) ?? []);
  return nft.tryApply(
    [...previous.flatMap((p) => removeScript(p)), ...ports.flatMap((p) => addScript(p, "create"))].join("\n"),
  );
}

/** Unguarded ports whose exact elements wait to be dropped in one transaction. */
const staleGuards = removalQueue<GuardedPort>((host, ports) =>
  host.firewall(() => {
    const nft = new Nft();
    const exact = ports.flatMap((p) => removeScript(p));
    // One of them already gone (gc took it, a flush emptied the tables) fails the batch: list and diff instead.
    if (!nft.tryApply(exact.join("\n")))
      removeListed(
        nft,
        ports.map((p) => p.ifname),
      );
  }),
);

function removeListed(nft: Nft, ifnames: string[]): void {
  const lines = Object.values(TABLES).flatMap((t) => {
    const objs = nft.list(["table", t.family, TABLE]);
    return ifnames.flatMap((ifname) => deleteScript(objs, t, ifname));
  });
  nft.apply(lines.join("\n"));
}

/** Make (or mend) the chains and sets that `net`'s ports will use; a network creates them before its first port. */
export function prepareAntispoof(host: Host, net: NetworkRecord): void {
  host.firewall(() => {
    const nft = new Nft();
    const lines = tablesFor(portKind(net)).flatMap((t) =>
      ensureScript(nft.list(["table", t.family, TABLE]), t),
    );
    nft.apply(lines.join("\n"));
  });
}

/**
 * Drop our anti-spoofing chains and sets that no network needs any more and no port uses (after a network's
 * removal; `leaving` is that network, its record still in the store).
 */
export function releaseIdleTables(host: Host, leaving?: string): void {
  const needed = new Set(
    host.store
      .listNetworks()
      .filter((n) => n.name !== leaving && antispoofEnabled(n))
      .flatMap((n) => tablesFor(portKind(n)).map((t) => t.family)),
  );
  host.firewall(() => {
    const nft = new Nft();
    const lines = Object.values(TABLES).flatMap((t) => {
      if (needed.has(t.family)) return [];
      const objs = nft.list(["table", t.family, TABLE]);
      return objs && setElements(objs, S_PORTS.name).length === 0 ? dropScript(objs, t) : [];
    });
    nft.apply(lines.join("\n"));
  });
}

/** Elements of our anti-spoofing sets per table, as `set: ["ifname . value", ...]` (for tests and audit). */
export function guardedElements(nft = new Nft()): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  for (const t of Object.values(TABLES)) {
    const objs = nft.list(["table", t.family, TABLE]);
    if (!objs) continue;
    const sets: Record<string, string[]> = {};
    for (const s of t.sets) sets[s.name] = setElements(objs, s.name).map((e) => e.join(" . "));
    out[t.family] = sets;
  }
  return out;
}

/** The ports currently guarded (any table). */
export function guardedPorts(nft = new Nft()): string[] {
  const all = guardedElements(nft);
  return [...new Set(Object.values(all).flatMap((sets) => sets["as_ports"] ?? []))].sort();
}

// ---------------------------------------------------------------------------------------------------------

function ensureScript(objs: NftObject[] | null, t: TableDef): string[] {
  if (objs && healthy(objs, t)) return [];
  const T = `${t.family} ${TABLE}`;
  const lines = [`add table ${T}`];
  // Damaged or missing: the chain and the sets go and come back together (a set in use cannot be deleted).
  if (objs?.some((o) => chainName(o) === ANTISPOOF_CHAIN)) lines.push(`delete chain ${T} ${ANTISPOOF_CHAIN}`);
  for (const s of t.sets)
    if (objs?.some((o) => setName(o) === s.name)) lines.push(`delete set ${T} ${s.name}`);
  for (const s of t.sets) lines.push(`add set ${T} ${s.name} { ${s.decl} }`);
  lines.push(
    `add chain ${T} ${ANTISPOOF_CHAIN} { type filter hook ${t.hook} priority -300; policy accept; }`,
    ...t.rules.map((r) => `add rule ${T} ${ANTISPOOF_CHAIN} ${r}`),
  );
  return lines;
}

function dropScript(objs: NftObject[], t: TableDef): string[] {
  const T = `${t.family} ${TABLE}`;
  // A table holding nothing but ours goes whole (bridge, arp); the inet table belongs to Firewall.
  const foreign = objs.some((o) => {
    const rule = asRecord(o["rule"]);
    if (rule) return rule["chain"] !== ANTISPOOF_CHAIN;
    if ("table" in o) return false;
    return chainName(o) !== ANTISPOOF_CHAIN && !t.sets.some((s) => s.name === setName(o));
  });
  if (!foreign) return [`delete table ${T}`];
  const lines: string[] = [];
  if (objs.some((o) => chainName(o) === ANTISPOOF_CHAIN)) lines.push(`delete chain ${T} ${ANTISPOOF_CHAIN}`);
  for (const s of t.sets)
    if (objs.some((o) => setName(o) === s.name)) lines.push(`delete set ${T} ${s.name}`);
  return lines;
}

function healthy(objs: NftObject[], t: TableDef): boolean {
  const rules = objs.filter((o) => asRecord(o["rule"])?.["chain"] === ANTISPOOF_CHAIN).length;
  const hasChain = objs.some((o) => chainName(o) === ANTISPOOF_CHAIN);
  return hasChain && rules === t.rules.length && t.sets.every((s) => objs.some((o) => setName(o) === s.name));
}

/** The elements `port` owns in each of `t`'s sets. */
function portElements(t: TableDef, port: GuardedPort): { set: string; elems: string[] }[] {
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
  return t.sets.map((s) => ({ set: s.name, elems: elems[s.name] ?? [] })).filter((e) => e.elems.length > 0);
}

/**
 * Lines adding `port`'s elements, in the tables of its kind or only in `only`. `create` for the as_ports element
 * refuses a leftover of the same name; `add` lets it be.
 */
function addScript(port: GuardedPort, verb: "add" | "create", only?: TableDef): string[] {
  return elementLines(port, only, (set) => (set === S_PORTS.name ? verb : "add"));
}

function removeScript(port: GuardedPort): string[] {
  return elementLines(port, undefined, () => "delete");
}

function elementLines(
  port: GuardedPort,
  only: TableDef | undefined,
  verb: (set: string) => string,
): string[] {
  return (only ? [only] : tablesFor(port.kind)).flatMap((t) =>
    portElements(t, port).map(
      (e) => `${verb(e.set)} element ${t.family} ${TABLE} ${e.set} { ${e.elems.join(", ")} }`,
    ),
  );
}

function deleteScript(objs: NftObject[] | null, t: TableDef, ifname: string): string[] {
  if (!objs) return [];
  const lines: string[] = [];
  for (const s of t.sets) {
    const mine = setElements(objs, s.name).filter((e) => e[0] === ifname);
    if (mine.length === 0) continue;
    const text = mine.map((e) => e.map((v, i) => (i === 0 ? `"${v}"` : v)).join(" . "));
    lines.push(`delete element ${t.family} ${TABLE} ${s.name} { ${text.join(", ")} }`);
  }
  return lines;
}

/** Elements of one set as their components: `["nc-web"]`, `["nc-web", "10.1.0.2"]`. */
function setElements(objs: NftObject[], name: string): string[][] {
  const set = objs.map((o) => asRecord(o["set"])).find((s) => s?.["name"] === name);
  const elems = set?.["elem"];
  if (!Array.isArray(elems)) return [];
  return elems.map((raw) => {
    const val = asRecord(raw)?.["elem"] ? (asRecord(asRecord(raw)?.["elem"])?.["val"] ?? null) : raw;
    const concat = asRecord(val)?.["concat"];
    return Array.isArray(concat) ? concat.map(String) : [String(val)];
  });
}

function chainName(o: NftObject): string | undefined {
  const c = asRecord(o["chain"]);
  return c ? String(c["name"]) : undefined;
}

function setName(o: NftObject): string | undefined {
  const s = asRecord(o["set"]);
  return s ? String(s["name"]) : undefined;
}

function asRecord(v: NftValue | undefined): { [key: string]: NftValue } | null {
  return v !== null && v !== undefined && typeof v === "object" && !Array.isArray(v) ? v : null;
}

/** Guard an l2 context's attachment right after its veth exists, before its side comes up. */
export function guardAttachment(host: Host, net: NetworkRecord, ctxRtnl: Rtnl, att: Attachment): void {
  if (!antispoofEnabled(net) || !att.hostIfname) return;
  // The engine picks every l2 attachment's MAC when it plans it; older records read theirs from the kernel.
  const mac = att.mac ?? ctxRtnl.linkGet(att.ifname)?.mac;
  if (!mac) throw new NetctxError("internal", `antispoof: no MAC on ${att.ifname}`);
  guardPort(host, {
    ifname: att.hostIfname,
    kind: portKind(net),
    mac,
    addresses: att.addresses,
  });
}

export function unguardAttachment(host: Host, net: NetworkRecord, att: Attachment): void {
  if (!antispoofEnabled(net) || !att.hostIfname) return;
  // Records from before MACs were chosen at planning time lack one: those take the listing path.
  const guarded = att.mac
    ? { ifname: att.hostIfname, kind: portKind(net), mac: att.mac, addresses: att.addresses }
    : undefined;
  unguardPort(host, att.hostIfname, guarded);
}

function portKind(net: NetworkRecord): PortKind {
  return net.driver === "routed" ? "routed" : "bridge";
}
