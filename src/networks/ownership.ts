/**
 * What each record owns in the kernel, as its drivers declare it (the shape of CNI's per-plugin CHECK/GC and of a
 * Kubernetes controller's desired state). Network drivers and level drivers fill an Ownership for the records of
 * the store; engine/reconcile compares it with what the kernel holds and fixes the difference. The knowledge of
 * which objects a driver makes stays in that driver: the loop never asks what kind of network or level it is.
 *
 * An object is named by kind and id, the id being what an observer reads back from the kernel ("nc-web", "table
 * 1001", "10.0.0.1/24 dev nc-web"). A declaration with `make` is required: the loop makes it when missing. One
 * without is only owned: kept when present (a record still being made or removed owns what it has so far).
 */

import type { GuardedPort } from "../firewall/antispoof.ts";
import type { FirewallNetwork } from "../firewall/firewall.ts";
import type { WantedPublish } from "../firewall/publish.ts";
import { canonicalCidr } from "../net/cidr.ts";

export type ObjectKind =
  | "link"
  | "netns"
  | "cgroup"
  | "rule"
  | "route"
  | "address"
  | "neighbour"
  | "shortcut";

/** A change the loop makes: what it reports (`add link nc-x: its network needs it`) and how. */
export interface Fix {
  action: string;
  object: string;
  reason: string;
  run: () => void;
}

export interface Declared {
  kind: ObjectKind;
  id: string;
  /** `network NAME` or `context NAME`: whose object it is. */
  owner: string;
  /** Every present object whose id starts with `id` is this one's (a network's segment bridges). */
  prefix?: boolean;
  /** The link it sits on: made only once that link is there. */
  on?: string;
  /** Make it when it is missing. */
  make?: Fix;
  /** Compare a present object with what its record wants; the fix when it differs. */
  check?: () => Fix | undefined;
}

/** A kernel object carrying our marks, as an observer found it. */
export interface Present {
  kind: ObjectKind;
  id: string;
  /** How a report names it (`route 10.1.0.0/24 dev nc-a table 1001`); the id when absent. */
  object?: string;
  /** The link it sits on: gone, or going, with that link. */
  on?: string;
  /** Why it goes when no record declares it (`no context owns it`). */
  unowned?: string;
  /** Take it out; absent for objects the loop may only add to (the kernel's and other programs' routes). */
  remove?: () => void;
}

/** A guarded port the firewall owner should hold, and what to guard when it is missing (firewall/reconcile.ts). */
export interface DeclaredGuard {
  owner: string;
  ifname: string;
  kind: GuardedPort["kind"];
  /** The port (an old record's MAC read from the context's netns); absent while the record is not settled. */
  port?: () => GuardedPort;
}

/** What the firewall owner's tables should hold, as the records declare it (firewall/reconcile.ts's input). */
export interface FirewallDeclarations {
  networks: FirewallNetwork[];
  /** ifname -> network */
  interfaces: Map<string, string>;
  /** Kinds of port some network guards: their tables stay while such a network does, ports or not. */
  guardedKinds: GuardedPort["kind"][];
  guards: DeclaredGuard[];
  /** Contexts whose published ports are theirs; `want` (settled contexts only) is what they should be. */
  publications: { context: string; want?: WantedPublish }[];
}

export class Ownership {
  readonly objects: Declared[] = [];
  readonly firewall: FirewallDeclarations = {
    networks: [],
    interfaces: new Map(),
    guardedKinds: [],
    guards: [],
    publications: [],
  };

  /**
   * Declarations of one record. `settled`: the record is ready (a context) or has no operation under way (a
   * network); only then are its missing objects made.
   */
  of(owner: string, settled: boolean, inFirewall = true): Declarer {
    return new Declarer(this, owner, settled, inFirewall);
  }
}

/** The declaring side of one record, handed to its drivers. */
export class Declarer {
  constructor(
    private readonly into: Ownership,
    readonly owner: string,
    readonly settled: boolean,
    /** False for a network whose rm is under way: its remover is taking its firewall elements out. */
    private readonly inFirewall = true,
  ) {}

  /** An object this record owns; `make` (kept only when settled) makes it, `check` compares it when present. */
  own(
    kind: ObjectKind,
    id: string,
    opts: {
      prefix?: boolean;
      on?: string;
      make?: Omit<Fix, "object"> & { object?: string };
      check?: () => Fix | undefined;
    } = {},
  ): void {
    const d: Declared = { kind, id, owner: this.owner };
    if (opts.prefix) d.prefix = true;
    if (opts.on !== undefined) d.on = opts.on;
    if (opts.make && this.settled) d.make = { ...opts.make, object: opts.make.object ?? `${kind} ${id}` };
    if (opts.check && this.settled) d.check = opts.check;
    this.into.objects.push(d);
  }

  firewallNetwork(net: FirewallNetwork): void {
    if (this.inFirewall) this.into.firewall.networks.push(net);
  }

  firewallInterface(ifname: string, network: string): void {
    if (this.inFirewall) this.into.firewall.interfaces.set(ifname, network);
  }

  /** This network guards its contexts' ports in `kind`'s tables. */
  guardsPorts(kind: GuardedPort["kind"]): void {
    if (this.inFirewall && !this.into.firewall.guardedKinds.includes(kind))
      this.into.firewall.guardedKinds.push(kind);
  }

  guard(ifname: string, kind: GuardedPort["kind"], port: () => GuardedPort): void {
    this.into.firewall.guards.push({
      owner: this.owner,
      ifname,
      kind,
      ...(this.settled ? { port } : {}),
    });
  }

  /** The context's published ports; a context with none declares them too, so its elements are no strays. */
  publish(context: string, want: WantedPublish | undefined): void {
    this.into.firewall.publications.push({ context, ...(want && this.settled ? { want } : {}) });
  }
}

/** How an address on a device is named, however it was written ("fd00::1/64" and "fd00:0::1/64" are one). */
export function addressId(cidr: string, ifname: string): string {
  return `${canonicalCidr(cidr)} dev ${ifname}`;
}

/** A route of the main table, by destination and device. */
export function mainRouteId(dst: string, dev: string): string {
  return `${dst === "default" ? dst : canonicalCidr(dst)} dev ${dev}`;
}

/** An l3 context's rules and the routes of its table go by the table: declared with `prefix`, it owns all of them. */
export function tableId(table: number): string {
  return `table ${table}`;
}

/** One policy rule of a context table, by what it selects (`table 1001 -4 from 10.1.0.5/32`). */
export function ruleId(r: {
  family: 4 | 6;
  table: number;
  from?: string | undefined;
  fwmark?: number | undefined;
}): string {
  const bits = r.family === 4 ? 32 : 128;
  const from =
    r.from === undefined ? "" : ` from ${canonicalCidr(r.from.includes("/") ? r.from : `${r.from}/${bits}`)}`;
  const mark = r.fwmark === undefined ? "" : ` fwmark ${r.fwmark}`;
  return `${tableId(r.table)} -${r.family}${from}${mark}`;
}

/** One route of a context table, by family and destination (`table 1001 -4 default`). */
export function tableRouteId(table: number, family: 4 | 6, dst: string): string {
  return `${tableId(table)} -${family} ${dst === "default" ? dst : canonicalCidr(dst)}`;
}

/**
 * An object inside a context's own netns (its interface, addresses, routes, neighbours), named apart from the host's
 * by that netns (`10.0.0.5/24 dev eth0 in netctx-web`). Observed only in this store's netns, never removed there:
 * the context owns its netns, netctx only puts back what it made.
 */
export function insideId(netns: string, id: string): string {
  return `${id} in ${netns}`;
}

/**
 * A route of a context's main table: a default route by family alone (the first network to give one holds it, as
 * create and disconnect do), any other by family, destination and device.
 */
export function insideRouteId(family: 4 | 6, dst: string, dev: string | undefined): string {
  return dst === "default" ? `-${family} default` : `-${family} ${canonicalCidr(dst)} dev ${dev ?? "-"}`;
}

/** A neighbour entry by address, MAC and device: one with another MAC is not the one declared. */
export function neighbourId(ip: string, mac: string, ifname: string): string {
  const address = canonicalCidr(`${ip}/${ip.includes(":") ? 128 : 32}`).split("/")[0];
  return `${address} lladdr ${mac.toLowerCase()} dev ${ifname}`;
}
