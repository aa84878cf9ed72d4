/**
 * Our nftables table: `table inet netctx`. NAT (masquerade) and `internal` (no egress) for networks.
 *
 * Why this shape: the rule set is a fixed list of 14 rules; networks and interfaces only add set elements, so
 * the packet path costs the same set lookups with 1 network or 1000, and every change is an element diff.
 *  - `intra4`/`intra6` (`addr . addr`, interval): one element `S . T` per pair of subnets S, T of a network
 *    (one family). "saddr . daddr in intra" means "source and destination are in the same network", the no-NAT
 *    condition, with elements per network however many contexts it has.
 *  - `local4`/`local6` (`ifname . addr`, interval), for internal networks: one element per (interface of the
 *    network, subnet of the same network). "oif . saddr in local" means "the packet stays inside the network its
 *    source belongs to", the allowed-for-internal condition (in the input chain, "iif . daddr in local": the
 *    packet is for the gateway of its network), without pairs of interfaces (quadratic for routed networks,
 *    where every context has its own host-side veth) and without a netid in the packet mark (the l3
 *    level uses fwmarks for its routing tables; we must not clobber them). Deleting an element of such a set
 *    (pipapo) costs O(elements): at 1000 routed contexts, 64 of them took ~1 s, which is why only internal
 *    networks pay it.
 *    Correct because subnets of different networks never overlap (checked here, as IPAM does).
 *  - `nat4`/`nat6`: subnets of NAT networks; `internal_ifs`: interfaces of internal networks; `same_if`: see
 *    the forward chain.
 *  - `nets4`/`nets6` (comment = network name), `internal4`/`internal6` and `ifaces` (comment = network) are
 *    the registry: they are how a later process (the CLI is one-shot) learns a network's subnets and flags
 *    from the kernel when only `addInterface(network, ifname)` is called. No rule reads them.
 *
 * Every operation reads the table once, changes an in-memory model, and commits the element diff (plus the
 * table itself if it is missing or damaged) as one `nft -f -` transaction. Stray elements that no network
 * owns are removed by any commit, so the table heals towards the model. Two writers at once can make the
 * later one fail (it deletes an element the other already deleted): the engine serialises through its state
 * lock. A flushed ruleset loses the registry: `netctx repair` re-adds networks from the state store.
 * After the last network is removed the table stays with empty sets; removeAll() deletes it.
 * br_netfilter (loaded here) makes bridged traffic pass the inet hooks too, with iif = oif = the bridge: such
 * traffic is never masqueraded (`intra` matches) and never dropped as internal egress (`same_if`).
 */
import { conflict, invalid, NetctxError, notFound } from "../errors.ts";
import { familyBits, formatIp, parseCidr as parseCidrText, parseIp } from "../net/cidr.ts";
import { ifnameProblem } from "../net/ifname.ts";
import { Nft, type NftValue } from "./nft.ts";

export interface FirewallNetwork {
  name: string;
  subnets: string[];
  nat: boolean;
  internal: boolean;
}

export const TABLE = "netctx";
const T = `inet ${TABLE}`;

type Family = 4 | 6;

interface Cidr {
  family: Family;
  addr: bigint;
  len: number;
}

interface NetRecord {
  subnets: Cidr[];
  nat: boolean;
  internal: boolean;
}

interface Model {
  networks: Map<string, NetRecord>;
  /** ifname -> network name */
  ifaces: Map<string, string>;
}

interface SetDef {
  name: string;
  type: string[];
  interval: boolean;
}

const SETS: readonly SetDef[] = [
  { name: "nets4", type: ["ipv4_addr"], interval: true },
  { name: "nets6", type: ["ipv6_addr"], interval: true },
  { name: "nat4", type: ["ipv4_addr"], interval: true },
  { name: "nat6", type: ["ipv6_addr"], interval: true },
  { name: "internal4", type: ["ipv4_addr"], interval: true },
  { name: "internal6", type: ["ipv6_addr"], interval: true },
  { name: "ifaces", type: ["ifname"], interval: false },
  { name: "internal_ifs", type: ["ifname"], interval: false },
  { name: "same_if", type: ["ifname", "ifname"], interval: false },
  { name: "local4", type: ["ifname", "ipv4_addr"], interval: true },
  { name: "local6", type: ["ifname", "ipv6_addr"], interval: true },
  { name: "intra4", type: ["ipv4_addr", "ipv4_addr"], interval: true },
  { name: "intra6", type: ["ipv6_addr", "ipv6_addr"], interval: true },
];

interface ChainDef {
  name: string;
  type: string;
  hook: string;
  prio: number;
  prioText: string;
  rules: string[];
}

const CHAINS: readonly ChainDef[] = [
  {
    name: "postrouting",
    type: "nat",
    hook: "postrouting",
    prio: 100,
    prioText: "srcnat",
    rules: [
      "ip saddr . ip daddr @intra4 return",
      "ip6 saddr . ip6 daddr @intra6 return",
      "ip saddr @nat4 masquerade",
      "ip6 saddr @nat6 masquerade",
    ],
  },
  {
    name: "forward",
    type: "filter",
    hook: "forward",
    prio: 0,
    prioText: "filter",
    // br_netfilter is loaded on this machine (and on most Docker hosts): bridged frames between ports of one
    // bridge then pass the inet forward hook with iif = oif = the bridge, including ND/MLD with :: or fe80::
    // sources and multicast destinations that no subnet matches. `same_if` holds one `I . I` element per
    // interface of an internal network (linear, not pairs): whatever stays on its interface stays in its network.
    // From an internal network: the source must belong to the arrival interface's network (else a context
    // could spoof another network's address and leave through that network), and the packet must leave
    // through an interface of that same network. Into an internal network: only from the same network.
    rules: [
      "iifname . oifname @same_if accept",
      "iifname @internal_ifs iifname . ip saddr != @local4 drop",
      "iifname @internal_ifs iifname . ip6 saddr != @local6 drop",
      "iifname @internal_ifs oifname . ip saddr != @local4 drop",
      "iifname @internal_ifs oifname . ip6 saddr != @local6 drop",
      "oifname @internal_ifs iifname . ip daddr != @local4 drop",
      "oifname @internal_ifs iifname . ip6 daddr != @local6 drop",
    ],
  },
  {
    name: "input",
    type: "filter",
    hook: "input",
    prio: 0,
    prioText: "filter",
    // From an internal network to the host itself (issue 15): a context that adds a default route of its own
    // reaches every local address, the host's other networks' gateways and the shared-stack contexts' addresses
    // among them, and none of that passes the forward hook. The only local addresses inside a network's subnets
    // are its gateways (subnets never overlap), so "the destination is in the arrival interface's network" is
    // "the destination is its gateway" (or its subnet's broadcast). Neighbour Discovery for the gateway goes to
    // solicited-node multicast and answers the host's link-local address: it stays allowed (ARP is no inet
    // traffic). After DNAT (prerouting), so a published port leads wherever its target is.
    rules: [
      "iifname @internal_ifs icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
      "iifname @internal_ifs iifname . ip daddr != @local4 drop",
      "iifname @internal_ifs iifname . ip6 daddr != @local6 drop",
    ],
  },
];

/** The number of rules in our table, whatever the number of networks and interfaces. */
export const RULE_COUNT = CHAINS.reduce((n, c) => n + c.rules.length, 0);

/** One desired or present element: `text` is what nft accepts, `key` compares across nft's output forms. */
interface Elem {
  key: string;
  text: string;
  comment?: string;
}

interface Listing {
  exists: boolean;
  healthy: boolean;
  elements: Map<string, Map<string, Elem>>;
}

export class Firewall {
  private readonly nft: Nft;
  private depth = 0;
  private pending: { listing: Listing; model: Model; ensure: boolean } | null = null;

  constructor(opts: { nftPath?: string } = {}) {
    this.nft = new Nft(opts.nftPath === undefined ? {} : { nftPath: opts.nftPath });
  }

  /** Start collecting changes; nested begin()s commit with the outermost commit(). */
  begin(): void {
    this.depth++;
  }

  /** Apply everything since the outermost begin() as one nft transaction. */
  commit(): void {
    if (this.depth === 0) throw new NetctxError("internal", "firewall: commit() without begin()");
    this.depth--;
    if (this.depth > 0) return;
    const p = this.pending;
    this.pending = null;
    if (p) this.nft.apply(buildScript(p.listing, p.model, p.ensure));
  }

  /** Drop everything since the outermost begin() without touching the kernel. */
  rollback(): void {
    this.depth = 0;
    this.pending = null;
  }

  ensure(): void {
    this.change((p) => {
      p.ensure = true;
    });
  }

  addNetwork(n: FirewallNetwork): void {
    validateNetworkName(n.name);
    if (n.subnets.length === 0) throw invalid("subnets", `network "${n.name}" has no subnets`);
    const subnets = dedupe(n.subnets.map((s, i) => parseCidr(s, `subnets[${i}]`)));
    for (const [i, a] of subnets.entries()) {
      const b = subnets.slice(i + 1).find((s) => overlaps(a, s));
      if (b) throw invalid("subnets", `${formatCidr(a)} overlaps ${formatCidr(b)}`);
    }
    this.change((p) => {
      for (const [other, rec] of p.model.networks) {
        if (other === n.name) continue;
        for (const a of subnets) {
          const b = rec.subnets.find((s) => overlaps(a, s));
          if (b)
            throw conflict("subnets", `${formatCidr(a)} overlaps ${formatCidr(b)} of network "${other}"`);
        }
      }
      p.model.networks.set(n.name, { subnets, nat: n.nat, internal: n.internal });
    });
  }

  /** Removes the network, its interfaces, and any leftover element for the given subnets. Missing is fine. */
  removeNetwork(name: string, subnets: string[]): void {
    validateNetworkName(name);
    const gone = subnets.map((s, i) => parseCidr(s, `subnets[${i}]`));
    this.change((p) => {
      p.model.networks.delete(name);
      for (const [other, rec] of p.model.networks) {
        // A record under another name holding these exact subnets is a leftover of this network.
        if (rec.subnets.some((s) => gone.some((g) => sameCidr(s, g)))) p.model.networks.delete(other);
      }
      for (const [ifname, net] of p.model.ifaces)
        if (!p.model.networks.has(net)) p.model.ifaces.delete(ifname);
    });
  }

  addInterface(network: string, ifname: string): void {
    validateNetworkName(network);
    validateIfname(ifname);
    this.change((p) => {
      if (!p.model.networks.has(network)) throw notFound("network", network);
      const owner = p.model.ifaces.get(ifname);
      if (owner !== undefined && owner !== network) {
        throw conflict("ifname", `interface ${ifname} already belongs to network "${owner}"`);
      }
      p.model.ifaces.set(ifname, network);
    });
  }

  /** Idempotent; an interface that belongs to another network is left alone. */
  removeInterface(network: string, ifname: string): void {
    validateNetworkName(network);
    validateIfname(ifname);
    this.change((p) => {
      if (p.model.ifaces.get(ifname) === network) p.model.ifaces.delete(ifname);
    });
  }

  /**
   * addInterface at scale (a routed network registers every context's veth): the interface's exact elements, from
   * the network as the caller's record has it, in one transaction without reading the table (a listing costs
   * O(interfaces)). `replacing`: the network whose elements of this name are still in the kernel (a removal that
   * was queued, see src/firewall/interface-queue.ts); they go out in the same transaction. `create` of the
   * `ifaces` element fails the whole transaction when the name is registered already, as a missing table or set
   * does; addInterface then decides on the full listing. Inside begin()/commit() the change joins the batch.
   */
  addInterfaceOf(network: FirewallNetwork, ifname: string, replacing?: FirewallNetwork): void {
    validateNetworkName(network.name);
    validateIfname(ifname);
    const script = [
      ...(replacing ? [interfaceScript(replacing, ifname, "delete")] : []),
      interfaceScript(network, ifname, "create"),
    ].join("\n");
    if (this.depth === 0 && this.nft.tryApply(script)) return;
    this.inOneTransaction(() => {
      if (replacing) this.removeInterface(replacing.name, ifname);
      this.addInterface(network.name, ifname);
    });
  }

  /**
   * removeInterface for many interfaces in one transaction of exact elements (deleting set elements costs the
   * kernel a grace period per transaction, ~10 ms here, not per element). One of them already gone fails it
   * whole: then one listing and diff takes them all out.
   */
  removeInterfacesOf(leaving: { network: FirewallNetwork; ifname: string }[]): void {
    for (const { network, ifname } of leaving) {
      validateNetworkName(network.name);
      validateIfname(ifname);
    }
    const script = leaving.map((l) => interfaceScript(l.network, l.ifname, "delete")).join("\n");
    if (this.depth === 0 && this.nft.tryApply(script)) return;
    this.inOneTransaction(() => {
      for (const { network, ifname } of leaving) this.removeInterface(network.name, ifname);
    });
  }

  /** The listing path of several changes: one read, one transaction; nothing applied if one of them throws. */
  private inOneTransaction(changes: () => void): void {
    this.begin();
    try {
      changes();
    } catch (err) {
      this.rollback();
      throw err;
    }
    this.commit();
  }

  /** Our sets and their elements as nft-style text (`br0 . 10.50.0.0/24`), read from the kernel. */
  elements(): { set: string; elements: string[] }[] {
    const listing = readListing(this.nft);
    return SETS.filter((s) => listing.elements.has(s.name)).map((s) => ({
      set: s.name,
      elements: [...(listing.elements.get(s.name)?.values() ?? [])].map((e) => e.text.replaceAll('"', "")),
    }));
  }

  /** Number of rules in `table inet netctx` as the kernel reports them (0 without the table). */
  ruleCount(): number {
    // Only our fixed chains: the anti-spoofing chain (antispoof.ts) shares the table and has its own count.
    return (this.nft.list(["table", "inet", TABLE]) ?? []).filter((o) =>
      CHAINS.some((c) => c.name === asRecord(o["rule"])?.["chain"]),
    ).length;
  }

  /**
   * Make our table hold exactly these networks and interfaces (ifname -> network), rebuilding it when it is
   * missing or damaged (gc, `netctx repair` after `nft flush ruleset`). Other tables are never touched.
   * Returns the element diff; with dryRun nothing is applied.
   */
  reconcile(
    networks: readonly FirewallNetwork[],
    ifaces: ReadonlyMap<string, string>,
    dryRun = false,
  ): { rebuild: boolean; remove: string[]; add: string[] } {
    this.rollback();
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
    const listing = readListing(this.nft);
    const ensure = model.networks.size > 0;
    const rebuild = (ensure || listing.exists) && (!listing.exists || !listing.healthy);
    const present = rebuild ? new Map<string, Map<string, Elem>>() : listing.elements;
    const desired = desiredElements(model);
    const remove: string[] = [];
    const add: string[] = [];
    for (const def of SETS) {
      const want = desired.get(def.name) ?? new Map<string, Elem>();
      const have = present.get(def.name) ?? new Map<string, Elem>();
      for (const e of have.values())
        if (!want.has(e.key)) remove.push(`${def.name} ${e.text.replaceAll('"', "")}`);
      for (const e of want.values())
        if (!have.has(e.key)) add.push(`${def.name} ${e.text.replaceAll('"', "")}`);
    }
    if (!dryRun) this.nft.apply(buildScript(listing, model, ensure));
    return { rebuild, remove, add };
  }

  /** Delete our tables (inet, and bridge and arp of antispoof.ts when they exist); others are not touched. */
  removeAll(): void {
    this.rollback();
    const tables = (this.nft.list(["tables"]) ?? [])
      .map((o) => asRecord(o["table"]))
      .filter((t) => t?.["name"] === TABLE && ["inet", "bridge", "arp"].includes(String(t["family"])));
    this.nft.apply(tables.map((t) => `delete table ${String(t?.["family"])} ${TABLE}`).join("\n"));
  }

  private change(fn: (p: { listing: Listing; model: Model; ensure: boolean }) => void): void {
    const standalone = this.depth === 0;
    if (standalone) this.begin();
    try {
      if (!this.pending) {
        const listing = readListing(this.nft);
        this.pending = { listing, model: modelOf(listing), ensure: false };
      }
      fn(this.pending);
    } catch (err) {
      if (standalone) this.rollback();
      throw err;
    }
    if (standalone) this.commit();
  }
}

// ---------------------------------------------------------------------------------------------------------
// script building

function buildScript(listing: Listing, model: Model, ensure: boolean): string {
  const desired = desiredElements(model);
  const anything = [...desired.values()].some((m) => m.size > 0);
  const lines: string[] = [];
  let present = listing.elements;
  if (!listing.exists || !listing.healthy) {
    if (!listing.exists && !ensure && !anything) return "";
    // Recreating in one transaction: `add` makes `delete` safe when the table is absent.
    lines.push(`add table ${T}`, `delete table ${T}`, ...tableScript());
    present = new Map();
  }
  for (const def of SETS) {
    const want = desired.get(def.name) ?? new Map<string, Elem>();
    const have = present.get(def.name) ?? new Map<string, Elem>();
    const del = [...have.values()].filter((e) => !want.has(e.key));
    const add = [...want.values()].filter((e) => !have.has(e.key));
    // Deletes first: an element whose comment changed is deleted and re-added within the same transaction.
    if (del.length) lines.push(`delete element ${T} ${def.name} { ${del.map((e) => e.text).join(", ")} }`);
    if (add.length) {
      const items = add.map((e) => (e.comment === undefined ? e.text : `${e.text} comment "${e.comment}"`));
      lines.push(`add element ${T} ${def.name} { ${items.join(", ")} }`);
    }
  }
  return lines.join("\n");
}

/** The element lines of one interface of a network: `create` (the ifaces element; the rest `add`) or `delete`. */
function interfaceScript(network: FirewallNetwork, ifname: string, op: "create" | "delete"): string {
  const subnets = network.subnets.map((s, i) => parseCidr(s, `subnets[${i}]`));
  const desired = desiredElements({
    networks: new Map([[network.name, { subnets, nat: network.nat, internal: network.internal }]]),
    ifaces: new Map([[ifname, network.name]]),
  });
  const lines: string[] = [];
  // A registration also re-adds the network's own intra elements (a no-op when present): a table of an older
  // layout, without those sets, refuses the transaction and so gets rebuilt by the listing path.
  const sets = ["ifaces", "internal_ifs", "same_if", "local4", "local6"];
  for (const set of op === "create" ? [...sets, "intra4", "intra6"] : sets) {
    const elems = [...(desired.get(set)?.values() ?? [])];
    if (elems.length === 0) continue;
    const verb = op === "delete" ? "delete" : set === "ifaces" ? "create" : "add";
    const items = elems.map((e) =>
      e.comment === undefined || op === "delete" ? e.text : `${e.text} comment "${e.comment}"`,
    );
    lines.push(`${verb} element ${T} ${set} { ${items.join(", ")} }`);
  }
  return lines.join("\n");
}

function tableScript(): string[] {
  const lines = [`add table ${T}`];
  for (const s of SETS) {
    lines.push(
      `add set ${T} ${s.name} { type ${s.type.join(" . ")};${s.interval ? " flags interval;" : ""} }`,
    );
  }
  for (const c of CHAINS) {
    lines.push(
      `add chain ${T} ${c.name} { type ${c.type} hook ${c.hook} priority ${c.prioText}; policy accept; }`,
    );
    for (const r of c.rules) lines.push(`add rule ${T} ${c.name} ${r}`);
  }
  return lines;
}

function desiredElements(model: Model): Map<string, Map<string, Elem>> {
  const out = new Map<string, Map<string, Elem>>(SETS.map((s) => [s.name, new Map()]));
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

function cidrElem(c: Cidr): Elem {
  return { key: cidrKey(c), text: formatCidr(c) };
}

function ifElem(ifname: string): Elem {
  return { key: `if:${ifname}`, text: `"${ifname}"` };
}

function sameIfElem(ifname: string): Elem {
  return { key: `if:${ifname}|if:${ifname}`, text: `"${ifname}" . "${ifname}"` };
}

function pairElem(a: Cidr, b: Cidr): Elem {
  return { key: `${cidrKey(a)}|${cidrKey(b)}`, text: `${formatCidr(a)} . ${formatCidr(b)}` };
}

function concatElem(ifname: string, c: Cidr): Elem {
  return { key: `if:${ifname}|${cidrKey(c)}`, text: `"${ifname}" . ${formatCidr(c)}` };
}

// ---------------------------------------------------------------------------------------------------------
// reading the kernel

function readListing(nft: Nft): Listing {
  const objects = nft.list(["table", "inet", TABLE]);
  const elements = new Map<string, Map<string, Elem>>();
  if (objects === null) return { exists: false, healthy: false, elements };
  let healthy = true;
  const ruleCounts = new Map<string, number>();
  const seenChains = new Set<string>();
  const seenSets = new Set<string>();
  for (const o of objects) {
    const set = asRecord(o["set"]);
    const chain = asRecord(o["chain"]);
    const rule = asRecord(o["rule"]);
    if (set) {
      const name = String(set["name"]);
      const def = SETS.find((s) => s.name === name);
      if (!def) continue;
      seenSets.add(name);
      const type = Array.isArray(set["type"]) ? set["type"].map(String) : [String(set["type"])];
      const flags = Array.isArray(set["flags"]) ? set["flags"].map(String) : [];
      if (type.join(".") !== def.type.join(".") || flags.includes("interval") !== def.interval)
        healthy = false;
      const family: Family | null = def.type.includes("ipv4_addr")
        ? 4
        : def.type.includes("ipv6_addr")
          ? 6
          : null;
      const elems = new Map<string, Elem>();
      for (const raw of Array.isArray(set["elem"]) ? set["elem"] : []) {
        const e = parseElem(raw, family);
        if (e) elems.set(e.key, e);
        else healthy = false;
      }
      elements.set(name, elems);
    } else if (chain) {
      const def = CHAINS.find((c) => c.name === chain["name"]);
      if (!def) continue;
      seenChains.add(def.name);
      if (chain["type"] !== def.type || chain["hook"] !== def.hook || chain["prio"] !== def.prio)
        healthy = false;
      if (chain["policy"] !== "accept") healthy = false;
    } else if (rule) {
      const c = String(rule["chain"]);
      ruleCounts.set(c, (ruleCounts.get(c) ?? 0) + 1);
    }
  }
  if (seenSets.size !== SETS.length || seenChains.size !== CHAINS.length) healthy = false;
  // Someone flushed or added to our chains: rebuild. Counting is enough to notice a flush (`netctx repair`).
  for (const c of CHAINS) if ((ruleCounts.get(c.name) ?? 0) !== c.rules.length) healthy = false;
  return { exists: true, healthy, elements };
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

function modelOf(listing: Listing): Model {
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

function asRecord(v: NftValue | undefined): { [key: string]: NftValue } | null {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? v : null;
}

// ---------------------------------------------------------------------------------------------------------
// names and addresses

function validateNetworkName(name: string): void {
  // The name travels inside an nft comment string (max 128 bytes) in a script: no quotes, no escapes.
  if (!/^[\x21-\x7e]{1,100}$/.test(name) || name.includes('"') || name.includes("\\")) {
    throw invalid("network", `"${name}" must be 1-100 printable characters without quotes or backslashes`);
  }
}

/** The kernel's name rule (net/ifname.ts), and nothing an nft script string could not carry. */
function validateIfname(ifname: string): void {
  const problem = ifnameProblem(ifname);
  if (problem) throw invalid("ifname", problem);
  if (!/^[\x21-\x7e]+$/.test(ifname) || /["\\]/.test(ifname))
    throw invalid(
      "ifname",
      `"${ifname}" cannot stand in an nft script (printable ASCII, no quotes or backslashes)`,
    );
}

/** "ADDRESS/PREFIX" (host bits cleared: "10.50.0.1/24", gateway notation, is the subnet 10.50.0.0/24) or a host. */
function parseCidr(text: string, field: string): Cidr {
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

/** An address as nft prints it, through the one address codec; null for anything else (a foreign element). */
function parseAddr(text: string, family: Family): bigint | null {
  try {
    const ip = parseIp(text, "address");
    return ip.family === family ? ip.addr : null;
  } catch {
    return null;
  }
}

function formatAddr(c: Cidr): string {
  return formatIp(c.family, c.addr);
}

function formatCidr(c: Cidr): string {
  return `${formatAddr(c)}/${c.len}`;
}

function cidrKey(c: Cidr): string {
  return `v${c.family}:${c.addr.toString(16)}/${c.len}`;
}

function cidrFromKey(key: string): Cidr | null {
  const m = key.match(/^v([46]):([0-9a-f]+)\/(\d+)$/);
  if (!m) return null;
  return { family: m[1] === "4" ? 4 : 6, addr: BigInt(`0x${m[2]}`), len: Number(m[3]) };
}

function sameCidr(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.addr === b.addr && a.len === b.len;
}

function overlaps(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const len = Math.min(a.len, b.len);
  const m = mask(a.family, len);
  return (a.addr & m) === (b.addr & m);
}

function dedupe(cidrs: Cidr[]): Cidr[] {
  return cidrs.filter((c, i) => cidrs.findIndex((d) => sameCidr(c, d)) === i);
}
