/**
 * The policy compiler: policy records, contexts (addresses and labels) and networks (gateways, subnets, switches) in,
 * model/policy-tables.ts's tables out, exactly per the decision rule written there. Pure: no store, no kernel, so
 * every rule is unit-tested (test/policy/compile.test.ts).
 *
 * - A policy's bit is its place in the policies ordered by name: the same records give the same tables.
 * - Selectors (model/policy.ts) become entries: a context is one /32 or /128 entry per address; `host` is every
 *   network's gateway addresses (the gateway of each block this node holds, for a network spanning hosts), the
 *   addresses through which contexts reach the host's services; `world` is the entries 0.0.0.0/0 and ::/0.
 * - A CIDR selector's bits spread into every entry it contains (contexts and gateways included), so the
 *   longest-prefix match alone finds them. World's bits do not spread into contexts or gateways, but do into the
 *   entries CIDR selectors add: an address such an entry covers and no context holds is still the world.
 * - `network:NAME` is the contexts on the network, and for a network spanning hosts (NetworkRecord.cluster) also its
 *   subnets as spreading entries: its contexts on other hosts are in no local record.
 * - `--isolate`: each isolating network (ordered by name) is a group, 1, 2, ..., set on its contexts' addresses on it.
 * - `--default-deny`: every address of a context on such a network is ingress-selected.
 */
import { invalid, NetctxError } from "../errors.ts";
import { networkSwitches, type PolicyRecord, parseSelector, type Selector } from "../model/policy.ts";
import {
  type AddressEntry,
  addressEntry,
  MAX_POLICIES,
  type PolicyTables,
  type PortEntry,
} from "../model/policy-tables.ts";
import type { NetworkRecord } from "../model/records.ts";
import { type Cidr, cidrContains, parseCidr } from "../net/cidr.ts";

/** What the compiler needs of a context: its labels and, per network, its addresses ("10.1.0.2/24" or bare). */
export interface PolicyContext {
  name: string;
  labels: Readonly<Record<string, string>>;
  attachments: readonly { network: string; addresses: readonly string[] }[];
}

export interface CompileInput {
  policies: readonly PolicyRecord[];
  contexts: readonly PolicyContext[];
  networks: readonly NetworkRecord[];
  /** Networks whose driver cannot enforce a policy on their contexts, with why (NetworkDriver.policyUnenforceable). */
  unenforceable?: ReadonlyMap<string, string>;
}

/** What made an entry: world's bits reach only the world and what CIDR selectors add. */
type EntryKind = "context" | "gateway" | "cidr" | "remote" | "world";

interface Slot {
  entry: AddressEntry;
  /** Parsed only when a spread needs it: parsing every context's address on every compile was most of its cost. */
  cidr: Cidr | undefined;
  kinds: Set<EntryKind>;
}

const cidrOf = (s: Slot): Cidr => {
  s.cidr ??= parseCidr(s.entry.cidr, "address");
  return s.cidr;
};

type Mark = (e: AddressEntry) => void;

export function compilePolicies({
  policies,
  contexts,
  networks,
  unenforceable = new Map(),
}: CompileInput): PolicyTables {
  if (policies.length > MAX_POLICIES)
    throw new NetctxError(
      "exhausted",
      `policies: ${policies.length} policies, the tables hold ${MAX_POLICIES}`,
    );
  const slots = new Map<string, Slot>();
  /** `text`: canonical (a record's address as hostCidr makes it, a parsed selector's or subnet's text). */
  const slot = (text: string, kind: EntryKind): Slot => {
    let s = slots.get(text);
    if (!s) {
      s = { entry: emptyEntry(text), cidr: undefined, kinds: new Set() };
      slots.set(text, s);
    }
    s.kinds.add(kind);
    return s;
  };

  const addressesOf = new Map<string, Slot[]>();
  for (const c of contexts) {
    const own: Slot[] = [];
    for (const a of c.attachments) for (const addr of a.addresses) own.push(slot(hostCidr(addr), "context"));
    addressesOf.set(c.name, own);
  }
  const gateways: Slot[] = [];
  for (const net of networks)
    for (const gw of gatewaysOf(net)) {
      const s = slot(hostCidr(gw), "gateway");
      s.entry.gateway = true;
      gateways.push(s);
    }

  const byName = new Map(networks.map((n) => [n.name, n]));
  const isolating = networks
    .filter((n) => networkSwitches(n.options).isolate)
    .map((n) => n.name)
    .sort();
  for (const c of contexts)
    for (const a of c.attachments) {
      const group = isolating.indexOf(a.network) + 1;
      if (group > 0)
        for (const addr of a.addresses) slot(hostCidr(addr), "context").entry.isolateGroup = group;
      const net = byName.get(a.network);
      if (net && networkSwitches(net.options).defaultDeny)
        for (const s of addressesOf.get(c.name) ?? []) s.entry.ingressSelected = true;
    }

  const spreads: { cidr: Cidr; mark: Mark }[] = [];
  const worldMarks: Mark[] = [];
  const select = (sel: Selector, mark: Mark): void => {
    switch (sel.kind) {
      case "context":
        for (const s of addressesOf.get(sel.name) ?? []) mark(s.entry);
        return;
      case "labels":
        for (const c of contexts)
          if (sel.labels.every(([k, v]) => c.labels[k] === v))
            for (const s of addressesOf.get(c.name) ?? []) mark(s.entry);
        return;
      case "network": {
        for (const c of contexts)
          if (c.attachments.some((a) => a.network === sel.name))
            for (const s of addressesOf.get(c.name) ?? []) mark(s.entry);
        const net = byName.get(sel.name);
        if (net?.cluster)
          for (const sub of net.subnets) {
            const s = slot(sub.cidr, "remote");
            spreads.push({ cidr: cidrOf(s), mark });
          }
        return;
      }
      case "host":
        for (const s of gateways) mark(s.entry);
        return;
      case "world":
        slot("0.0.0.0/0", "world");
        slot("::/0", "world");
        worldMarks.push(mark);
        return;
      case "cidr":
        slot(sel.cidr.text, "cidr");
        spreads.push({ cidr: sel.cidr, mark });
    }
  };

  const ports = new Map<string, PortEntry>();
  let anyPort = 0n;
  const ordered = [...policies].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  ordered.forEach((p, i) => {
    const bit = 1n << BigInt(i);
    const { to, from } = selectorsOf(p);
    if (p.egress) {
      select(from, (e) => {
        e.egressFrom |= bit;
        e.egressSelected = true;
      });
      select(to, (e) => {
        e.egressTo |= bit;
      });
    } else {
      select(to, (e) => {
        e.ingressTo |= bit;
        e.ingressSelected = true;
      });
      select(from, (e) => {
        e.ingressFrom |= bit;
      });
    }
    if (p.ports.length === 0) anyPort |= bit;
    for (const r of p.ports)
      for (let port = r.port; port <= (r.end ?? r.port); port++) {
        const key = `${r.proto}/${port}`;
        const have = ports.get(key) ?? { proto: r.proto, port, bits: 0n };
        have.bits |= bit;
        ports.set(key, have);
      }
  });

  refuseUnenforceable(contexts, unenforceable, addressesOf, ordered);

  for (const s of slots.values()) {
    for (const spread of spreads) {
      const c = cidrOf(s);
      if (spread.cidr.prefix <= c.prefix && cidrContains(spread.cidr, c.family, c.network))
        spread.mark(s.entry);
    }
    const worldly = s.kinds.has("world") || (s.kinds.size === 1 && s.kinds.has("cidr"));
    if (worldly) for (const mark of worldMarks) mark(s.entry);
  }

  // Ordered by text: the same records give the same list (the order means nothing to the longest-prefix match).
  const addresses = [...slots.keys()].sort().map((key) => slots.get(key)!.entry);
  const portList = [...ports.values()].sort((a, b) =>
    a.proto < b.proto ? -1 : a.proto > b.proto ? 1 : a.port - b.port,
  );
  return { addresses, ports: portList, anyPort };
}

/**
 * The tables after the contexts named in `changed` were made, changed or removed, from `before`, the tables compiled
 * for the same policies and networks and the contexts as they were: those contexts' entries (and the entries of no
 * context: gateways, CIDRs, the world) are compiled anew, every other context's entry is taken from `before`. An
 * entry of a context depends on the policies, the networks and that context alone, so this equals compilePolicies of
 * the whole input (test/policy/compile-incremental.test.ts holds it to that). `input.contexts` is every context now.
 * Undefined when an address of a changed context is also another's: then compile the whole input.
 */
export function recompileContexts(
  before: PolicyTables,
  input: CompileInput,
  changed: ReadonlySet<string>,
): PolicyTables | undefined {
  const kept = new Set<string>();
  for (const c of input.contexts)
    if (!changed.has(c.name))
      for (const a of c.attachments) for (const addr of a.addresses) kept.add(hostCidr(addr));
  const renewed = input.contexts.filter((c) => changed.has(c.name));
  for (const c of renewed)
    for (const a of c.attachments)
      for (const addr of a.addresses) if (kept.has(hostCidr(addr))) return undefined;
  const fresh =
    renewed.length > 0 ? compilePolicies({ ...input, contexts: renewed }) : withoutContexts(input);
  const addresses = [
    ...before.addresses.filter((e) => kept.has(e.cidr)),
    // A CIDR selector's entry at an unchanged context's address: `before` has it with that context's bits too.
    ...fresh.addresses.filter((e) => !kept.has(e.cidr)),
  ].sort((a, b) => (a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0));
  return { addresses, ports: fresh.ports, anyPort: fresh.anyPort };
}

/**
 * The tables of `input`'s policies and networks without any context: what a removal compiles again. Kept per policy
 * list and network list (policy-sync hands the same lists on until either changes), so an rm compiles nothing.
 */
const contextless = new WeakMap<
  readonly PolicyRecord[],
  { networks: readonly NetworkRecord[]; tables: PolicyTables }
>();

function withoutContexts(input: CompileInput): PolicyTables {
  const known = contextless.get(input.policies);
  if (known && known.networks === input.networks) return known.tables;
  const tables = compilePolicies({ ...input, contexts: [] });
  contextless.set(input.policies, { networks: input.networks, tables });
  return tables;
}

/**
 * A policy's selectors, parsed once per record: policy-sync hands the same records to every compile until a policy
 * or network changes, and parsing 400 selectors was a third of a compile.
 */
const parsed = new WeakMap<PolicyRecord, { to: Selector; from: Selector }>();

function selectorsOf(p: PolicyRecord): { to: Selector; from: Selector } {
  let s = parsed.get(p);
  if (!s) {
    s = {
      to: parseSelector(`policy ${p.name}: to`, p.to),
      from: parseSelector(`policy ${p.name}: from`, p.from),
    };
    parsed.set(p, s);
  }
  return s;
}

/**
 * A selected context on a network whose driver cannot enforce policies (a macvlan network in bridge mode, whose
 * contexts switch frames to each other where no host hook sees them) is refused rather than left open while the
 * policy says otherwise. Named after the first policy (or the network's `--default-deny`) that selects it.
 */
function refuseUnenforceable(
  contexts: readonly PolicyContext[],
  unenforceable: ReadonlyMap<string, string>,
  addressesOf: ReadonlyMap<string, Slot[]>,
  ordered: readonly PolicyRecord[],
): void {
  if (unenforceable.size === 0) return;
  for (const c of contexts)
    for (const a of c.attachments) {
      const why = unenforceable.get(a.network);
      if (why === undefined) continue;
      const entries = (addressesOf.get(c.name) ?? []).map((s) => s.entry);
      const bits = entries.reduce((b, e) => b | e.ingressTo | e.egressFrom, 0n);
      if (bits === 0n && !entries.some((e) => e.ingressSelected || e.egressSelected)) continue;
      let first = 0;
      while (bits !== 0n && ((bits >> BigInt(first)) & 1n) === 0n) first++;
      const by = bits === 0n ? `network "${a.network}"` : `policy "${ordered[first]!.name}"`;
      throw invalid(
        bits === 0n ? "default-deny" : `policy ${ordered[first]!.name}`,
        `${by} selects context "${c.name}" on network "${a.network}": ${why}`,
      );
    }
}

function emptyEntry(cidr: string): AddressEntry {
  return addressEntry(cidr);
}

/**
 * "10.1.0.2/24" (an interface address) or "10.1.0.2" as the one host: "10.1.0.2/32". Records hold canonical
 * addresses (the store writes them so), so the text is kept as it is: parsing each on every compile cost more than the
 * rest of the compile.
 */
function hostCidr(address: string): string {
  const slash = address.indexOf("/");
  const ip = slash < 0 ? address : address.slice(0, slash);
  return `${ip}/${ip.includes(":") ? 128 : 32}`;
}

/** A network's gateway addresses on this host: its subnets' gateways, or those of the blocks this node holds. */
function gatewaysOf(net: NetworkRecord): string[] {
  return [
    ...net.subnets.flatMap((s) => (s.gateway ? [s.gateway] : [])),
    ...(net.cluster?.blocks.map((b) => b.gateway) ?? []),
  ];
}
