/**
 * Anti-spoofing for l2 contexts (CNI's spoofcheck as its own unit): a context's host-side port may send only
 * its own MAC and addresses, and ARP/ND only for its own addresses.
 *
 * Where (antispoof-objects.ts declares the chains and sets; the firewall owner, firewall.ts, writes them):
 *  - bridge ports: `table bridge netctx`, chain `antispoof` at bridge prerouting. It sees every frame a port
 *    sends, forwarded or for the host, before br_netfilter hands IP packets to the inet hooks.
 *  - routed networks' host-side veths are not bridge ports: `table inet netctx`, chain `antispoof` at
 *    prerouting (raw priority, before conntrack), and `table arp netctx` for ARP, which no inet hook sees.
 *    The inet chain and its `as_*` sets are one part of that table among others: whichever part finds the table
 *    damaged rebuilds it with every part's elements (parts.ts).
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
import { type Host, hostSlot, removalQueue } from "../host.ts";
import type { Rtnl } from "../kernel/rtnl.ts";
import type { Attachment } from "../model/attachment.ts";
import {
  ANTISPOOF,
  addScript,
  deleteScript,
  type GuardedPort,
  type PortKind,
  removeScript,
  S_PORTS,
  setComponents,
  tablesFor,
} from "./antispoof-objects.ts";
import type { Firewall } from "./firewall.ts";
import { Nft } from "./nft.ts";
import { asRecord, CLAIMED_NAME, readTable, type TableListing, type TablePart } from "./tables.ts";

export { ANTISPOOF_CHAIN, type GuardedPort, type PortKind } from "./antispoof-objects.ts";

/**
 * Allow `port` to send as itself and nothing else. Serialised with every other firewall change.
 * The usual case is one transaction of exact elements, with no listing: listing our tables costs O(contexts)
 * per change. `create` (not `add`) of the port's as_ports element makes that transaction fail whole when a
 * leftover of the same port name is still there (a crash between guard and unguard); then, as when a table
 * or set is missing, the slow path lists, mends and purges.
 */
export function guardPort(host: Host, port: GuardedPort): void {
  const batch = host.cache(guardBatch).open;
  if (batch) {
    batch.set(port.ifname, port);
    return;
  }
  host.firewall((fw) => {
    if (tryGuardExactly(host, fw, [port])) return;
    const lines: string[] = [];
    for (const t of tablesFor(port.kind)) {
      const listing = fw.table(t.family);
      const mend = fw.repairLines(listing, ["antispoof"], { job: "antispoof", owner: port.ifname });
      // A rebuilt table no longer holds the port's leftovers; one mended by adding its chain and sets never did.
      lines.push(
        ...mend,
        ...(mend.length ? [] : deleteScript(listing, t, port.ifname)),
        ...addScript(port, "add", fw.tableName, t),
      );
    }
    fw.apply(lines);
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
  if (host.cache(guardBatch).open?.delete(ifname)) return;
  if (guarded) {
    staleGuards.put(host, ifname, guarded);
    return;
  }
  host.firewall((fw) => removeListed(fw, [ifname]));
}

/** The ports guarded inside withGuardBatch, while one is open on the Host. */
const guardBatch = hostSlot((): { open?: Map<string, GuardedPort> } => ({}));

/**
 * Run `fn` with every guardPort() inside it collected, then guard them all in one nft transaction (netctx apply:
 * one commit per batch instead of one per context). The caller keeps the ports' contexts from running anything
 * until this returns. If the batch transaction fails, each port takes the one-by-one path.
 */
export function withGuardBatch<T>(host: Host, fn: () => T): T {
  const slot = host.cache(guardBatch);
  if (slot.open) return fn();
  const batch = new Map<string, GuardedPort>();
  slot.open = batch;
  let result: T;
  try {
    result = fn();
  } finally {
    delete slot.open;
  }
  const ports = [...batch.values()];
  let guarded = false;
  host.firewall((fw) => {
    guarded = tryGuardExactly(host, fw, ports);
  });
  if (!guarded) for (const port of ports) guardPort(host, port);
  return result;
}

/**
 * The fast path of guarding: one transaction of exact elements, no listing. Elements of the same port names still
 * queued for removal (staleGuards) go out in it first. False when the kernel refuses it whole (a table or set
 * missing, a leftover in the way): then nothing changed, and the caller takes the listing path.
 */
function tryGuardExactly(host: Host, fw: Firewall, ports: GuardedPort[]): boolean {
  const previous = ports.flatMap((p) => staleGuards.take(host, p.ifname) ?? []);
  return fw.tryApply([
    ...previous.flatMap((p) => removeScript(p, fw.tableName)),
    ...ports.flatMap((p) => addScript(p, "create", fw.tableName)),
  ]);
}

/** Unguarded ports whose exact elements wait to be dropped in one transaction. */
const staleGuards = removalQueue<GuardedPort>((host, ports) =>
  host.firewall((fw) => {
    // One of them already gone (gc took it, a flush emptied the tables) fails the batch: list and diff instead.
    if (!fw.tryApply(ports.flatMap((p) => removeScript(p, fw.tableName))))
      removeListed(
        fw,
        ports.map((p) => p.ifname),
      );
  }),
);

function removeListed(fw: Firewall, ifnames: string[]): void {
  fw.apply(
    Object.values(ANTISPOOF).flatMap((t) => {
      const listing = fw.table(t.family);
      return ifnames.flatMap((ifname) => deleteScript(listing, t, ifname));
    }),
  );
}

/** Make (or mend) the chains and sets ports of this kind use; a network creates them before its first port. */
export function prepareAntispoof(host: Host, kind: PortKind): void {
  host.firewall((fw) =>
    fw.apply(tablesFor(kind).flatMap((t) => fw.repairLines(fw.table(t.family), ["antispoof"]))),
  );
}

/**
 * Drop our anti-spoofing chains and sets that no network needs any more and no port uses (after a network's
 * removal). `stillGuarded`: the kinds of port the remaining networks guard (their drivers' portGuard).
 */
export function releaseIdleTables(host: Host, stillGuarded: readonly PortKind[]): void {
  const needed = new Set(stillGuarded.flatMap((k) => tablesFor(k).map((t) => t.family)));
  host.firewall((fw) =>
    fw.apply(
      Object.values(ANTISPOOF).flatMap((t) => {
        if (needed.has(t.family)) return [];
        const listing = fw.table(t.family);
        return listing.exists && setComponents(listing, S_PORTS).length === 0 ? dropScript(listing, t) : [];
      }),
    ),
  );
}

/**
 * Elements of the anti-spoofing sets per family in the tables named `table`, as `set: ["ifname . value", ...]`
 * (for tests and audit).
 */
export function guardedElements(
  nft = new Nft(),
  table = CLAIMED_NAME,
): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  for (const t of Object.values(ANTISPOOF)) {
    const listing = readTable(t.family, { name: table }, nft.list(["table", t.family, table]));
    if (!listing.exists) continue;
    const sets: Record<string, string[]> = {};
    for (const s of t.sets) sets[s.name] = setComponents(listing, s).map((e) => e.join(" . "));
    out[t.family] = sets;
  }
  return out;
}

/** The ports currently guarded (any family of the tables named `table`). */
export function guardedPorts(nft = new Nft(), table = CLAIMED_NAME): string[] {
  const all = guardedElements(nft, table);
  return [...new Set(Object.values(all).flatMap((sets) => sets["as_ports"] ?? []))].sort();
}

// ---------------------------------------------------------------------------------------------------------

function dropScript(listing: TableListing, t: TablePart): string[] {
  const T = `${t.family} ${listing.table.name}`;
  const chain = t.chains[0]!.name;
  // A table holding nothing but ours goes whole (bridge, arp); the inet table holds the other parts too.
  const foreign = listing.objects.some((o) => {
    const rule = asRecord(o["rule"]);
    if (rule) return rule["chain"] !== chain;
    if ("table" in o) return false;
    const name = asRecord(o["chain"] ?? o["set"] ?? o["map"] ?? null)?.["name"];
    return "chain" in o ? name !== chain : !t.sets.some((s) => s.name === name);
  });
  if (!foreign) return [`delete table ${T}`];
  const lines: string[] = [];
  if (listing.chains.has(chain)) lines.push(`delete chain ${T} ${chain}`);
  for (const s of t.sets) if (listing.sets.has(s.name)) lines.push(`delete set ${T} ${s.name}`);
  return lines;
}

/** The port an l2 attachment's host side is guarded as: its MAC from the record, or `readMac` for older records. */
export function attachmentPort(
  kind: PortKind,
  att: Attachment,
  readMac: () => string | undefined,
): GuardedPort {
  if (!att.hostIfname) throw new NetctxError("internal", `antispoof: ${att.ifname} has no host-side port`);
  // The engine picks every l2 attachment's MAC when it plans it; older records read theirs from the kernel.
  const mac = att.mac ?? readMac();
  if (!mac) throw new NetctxError("internal", `antispoof: no MAC on ${att.ifname}`);
  return { ifname: att.hostIfname, kind, mac, addresses: att.addresses };
}

/**
 * Guard an l2 context's attachment right after its veth exists, before its side comes up. `kind`: how its network
 * guards ports (its driver's portGuard), undefined when it guards none (--no-antispoof).
 */
export function guardAttachment(
  host: Host,
  kind: PortKind | undefined,
  ctxRtnl: Rtnl,
  att: Attachment,
): void {
  if (!kind || !att.hostIfname) return;
  guardPort(
    host,
    attachmentPort(kind, att, () => ctxRtnl.linkGet(att.ifname)?.mac),
  );
}

export function unguardAttachment(host: Host, kind: PortKind | undefined, att: Attachment): void {
  if (!kind || !att.hostIfname) return;
  // Records from before MACs were chosen at planning time lack one: those take the listing path.
  const guarded = att.mac
    ? { ifname: att.hostIfname, kind, mac: att.mac, addresses: att.addresses }
    : undefined;
  unguardPort(host, att.hostIfname, guarded);
}
