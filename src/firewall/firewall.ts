/**
 * The firewall: the one owner of a store's nft tables (`inet`, `bridge` and `arp netctx`, or `netctx-<id>` where
 * another store claimed `netctx` first: naming.ts; the name is a property, given by the Host), in the manner of
 * netavark's FirewallDriver. Its parts (parts.ts) declare their objects: NAT and internal networks (nat-*.ts),
 * anti-spoofing (antispoof.ts) and publishing (publish.ts) ask it for listings and hand it their transactions;
 * whichever of them finds a table missing or damaged rebuilds it whole with every part's objects and elements, so
 * nothing is wiped for another to put back. gc and `netctx repair` hand it the whole desired state (reconcile.ts).
 *
 * The NAT part's changes: every operation reads the table once, changes an in-memory model, and commits the
 * element diff (plus the table itself if it is missing or damaged) as one `nft -f -` transaction. Stray elements
 * that no network owns are removed by any commit, so the table heals towards the model. Two writers at once can
 * make the later one fail (it deletes an element the other already deleted): the Host serialises them through a
 * lock. A flushed ruleset loses the registry: `netctx repair` re-adds networks from the state store.
 * After the last network is removed the engine deletes the inet table once nothing else needs it (releaseIfIdle:
 * its base chains would hook every packet of the host for nothing); removeAll() deletes our tables whatever they hold.
 * A store's firewall refuses a network whose subnets overlap a network of another store's tables (naming.ts).
 */
import { conflict, invalid, NetctxError, notFound } from "../errors.ts";
import { isStoreTableName, listedTables, tableClaimer } from "./naming.ts";
import {
  dedupe,
  type FirewallNetwork,
  formatCidr,
  type Model,
  overlaps,
  parseCidr,
  validateIfname,
  validateNetworkName,
} from "./nat-elements.ts";
import { modelOf, natListing } from "./nat-listing.ts";
import { NAT_CHAINS, NAT_SETS } from "./nat-objects.ts";
import { interfaceScript, natScript } from "./nat-script.ts";
import { Nft, type NftOptions } from "./nft.ts";
import { type Except, inetIdle, type Job, repairLines } from "./parts.ts";
import { type FirewallAction, type FirewallDesired, reconcileTables } from "./reconcile.ts";
import { CLAIMED_NAME, readTable, type TableFamily, type TableListing, type TableRef } from "./tables.ts";

export type { FirewallNetwork } from "./nat-elements.ts";
export { RULE_COUNT } from "./nat-objects.ts";
export type { DesiredGuard, DesiredPublication, FirewallAction, FirewallDesired } from "./reconcile.ts";
export { CLAIMED_NAME } from "./tables.ts";

interface Pending {
  table: TableListing;
  model: Model;
  ensure: boolean;
}

export interface FirewallOptions extends NftOptions {
  /** The tables it owns (the Host's decision, naming.ts); default `netctx`, claimed by no store. */
  table?: TableRef;
}

export class Firewall {
  private readonly nft: Nft;
  /** Which tables are ours: their name, and the claim their comment records (naming.ts). */
  readonly tables: TableRef;
  private depth = 0;
  private pending: Pending | null = null;
  private released = false;

  constructor(opts: FirewallOptions = {}) {
    this.nft = new Nft(opts);
    this.tables = opts.table ?? { name: CLAIMED_NAME };
  }

  /** Our tables' name in every family. */
  get tableName(): string {
    return this.tables.name;
  }

  // -------------------------------------------------------------------------------------------------------
  // the owner's side for its parts (antispoof.ts, publish.ts)

  /** Our table of `family` as the kernel lists it now. */
  table(family: TableFamily): TableListing {
    return readTable(family, this.tables, this.nft.list(["table", family, this.tables.name]));
  }

  /** One transaction; no lines, no transaction. */
  apply(lines: readonly string[]): void {
    this.nft.apply(lines.join("\n"));
  }

  /** One transaction if the kernel takes it whole; false when it refuses (nothing changed then): a fast path's try. */
  tryApply(lines: readonly string[]): boolean {
    return this.nft.tryApply(lines.join("\n"));
  }

  /**
   * The lines that mend a listed table before a part writes its elements (parts.ts): none when every part in it,
   * and the `needed` ones, are intact; the objects of a needed part it lacks; else the table rebuilt with every
   * part's objects and the elements it holds, less `except`'s (the caller writes those anew).
   */
  repairLines(listing: TableListing, needed: readonly Job[], except?: Except): string[] {
    return repairLines(listing, needed, except);
  }

  /** Deletes our inet table when nothing needs it any more (parts.ts inetIdle); true when it did. */
  releaseIfIdle(): boolean {
    const listing = this.table("inet");
    if (!inetIdle(listing)) return false;
    this.nft.apply(`delete table inet ${this.tables.name}`);
    this.released = true;
    return true;
  }

  /**
   * Whether our inet table was deleted as idle since the last call (releaseIfIdle, or reconcile): the owner of the
   * claim (Host) claims the name anew for the next table.
   */
  takeReleased(): boolean {
    const released = this.released;
    this.released = false;
    return released;
  }

  /**
   * Make our tables hold exactly what the records declare (gc, `netctx repair` after `nft flush ruleset`): every
   * part checked, a table missing or damaged rebuilt with all its parts, elements diffed otherwise, all in one
   * transaction. Other tables are never touched. Returns what it did (with dryRun: what it would do).
   */
  reconcile(
    desired: FirewallDesired,
    opts: { dryRun?: boolean; publishCgroup?: string | undefined } = {},
  ): FirewallAction[] {
    this.rollback();
    const actions = reconcileTables(this.nft, this.tables, desired, opts);
    if (
      !opts.dryRun &&
      actions.some((a) => a.action === "remove" && a.object === `nft table inet ${this.tables.name}`)
    )
      this.released = true;
    return actions;
  }

  /**
   * Delete our tables (inet, bridge and arp when they exist); others are not touched, nor one of our name that
   * another store's mark claims.
   */
  removeAll(): void {
    this.rollback();
    const { name, store } = this.tables;
    const tables = listedTables(this.nft).filter((t) => {
      if (t.name !== name) return false;
      if (store === undefined) return true;
      const claimer = tableClaimer(this.nft, t.family, t.name);
      return claimer?.id === undefined || claimer.id === store;
    });
    this.nft.apply(tables.map((t) => `delete table ${t.family} ${name}`).join("\n"));
  }

  // -------------------------------------------------------------------------------------------------------
  // NAT and internal networks

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
    if (p) this.nft.apply(natScript(p.table, p.model, p.ensure));
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
    this.refuseOtherStoresOverlap(subnets);
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

  /**
   * Removes the network and its interfaces, by its name only; missing is fine. Never another network's elements,
   * even on the same subnets: a failed create undoes this way, and the network whose subnets it was refused for
   * (another store's on a shared table, issue 17) keeps its NAT. A crash's leftover under another name is gc's to
   * find, from the records (reconcile), not a guess from subnets.
   */
  removeNetwork(name: string): void {
    validateNetworkName(name);
    this.change((p) => {
      p.model.networks.delete(name);
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
      ...(replacing ? [interfaceScript(this.tables.name, replacing, ifname, "delete")] : []),
      interfaceScript(this.tables.name, network, ifname, "create"),
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
    const script = leaving
      .map((l) => interfaceScript(this.tables.name, l.network, l.ifname, "delete"))
      .join("\n");
    if (this.depth === 0 && this.nft.tryApply(script)) return;
    this.inOneTransaction(() => {
      for (const { network, ifname } of leaving) this.removeInterface(network.name, ifname);
    });
  }

  /** Our NAT sets and their elements as nft-style text (`br0 . 10.50.0.0/24`), read from the kernel. */
  elements(): { set: string; elements: string[] }[] {
    const listing = natListing(this.table("inet"));
    return NAT_SETS.filter((s) => listing.elements.has(s.name)).map((s) => ({
      set: s.name,
      elements: [...(listing.elements.get(s.name)?.values() ?? [])].map((e) => e.text.replaceAll('"', "")),
    }));
  }

  /** Number of rules in the NAT chains of our inet table as the kernel reports them (0 without the table). */
  ruleCount(): number {
    // Only the NAT chains: the other parts' chains share the table and have their own counts.
    const rules = this.table("inet").rules;
    return NAT_CHAINS.reduce((n, c) => n + (rules.get(c.name) ?? 0), 0);
  }

  /**
   * Another store's network on these subnets: refused, as one of ours is (the host routes each subnet to one
   * network). Read from the other stores' inet tables (naming.ts); only a store's firewall looks, and only when a
   * network is added.
   */
  private refuseOtherStoresOverlap(subnets: ReturnType<typeof parseCidr>[]): void {
    if (this.tables.store === undefined) return;
    const others = listedTables(this.nft).filter(
      (t) => t.family === "inet" && t.name !== this.tables.name && isStoreTableName(t.name),
    );
    for (const t of others) {
      const listing = readTable("inet", { name: t.name }, this.nft.list(["table", "inet", t.name]));
      for (const [other, rec] of modelOf(natListing(listing)).networks) {
        for (const a of subnets) {
          const b = rec.subnets.find((s) => overlaps(a, s));
          if (b)
            throw conflict(
              "subnets",
              `${formatCidr(a)} overlaps ${formatCidr(b)} of network "${other}" of another store (table inet ${t.name})`,
            );
        }
      }
    }
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

  private change(fn: (p: Pending) => void): void {
    const standalone = this.depth === 0;
    if (standalone) this.begin();
    try {
      if (!this.pending) {
        const table = this.table("inet");
        this.pending = { table, model: modelOf(natListing(table)), ensure: false };
      }
      fn(this.pending);
    } catch (err) {
      if (standalone) this.rollback();
      throw err;
    }
    if (standalone) this.commit();
  }
}
