/**
 * The state the engine talks to: network and context records (each with the mark of an operation under way, the
 * intent gc finishes or undoes after a crash), the address leases that tie them together, and transactions over
 * all of it. SQLite (store.ts) is the one implementation today; a store shared by the hosts of a network that spans
 * them is meant to be a second one, behind the same methods.
 *
 * What every implementation promises:
 * - Records are checked on write and on load against model/records.ts; a malformed one is refused naming the record
 *   and the field (code "invalid" on write, "internal" on load).
 * - A network's subnets are canonical and overlap no other network's; an address is leased once per network.
 * - transaction(fn) runs fn all or nothing against every other process using the store; calls nest (a nested
 *   failure undoes only its own part); fn must be synchronous. Every write method is one transaction of its own,
 *   or joins the caller's.
 */
import type { PolicyRecord } from "../model/policy.ts";
import type { ContextRecord, Lease, NetworkRecord } from "../model/records.ts";

export interface StateStore {
  /** The host-local state directory: lock files and the API socket live there. */
  readonly dir: string;
  /** Written on every kernel object the store's records make (state/store-id.ts); never changes. */
  readonly id: string;
  close(): void;
  transaction<T>(fn: () => T): T;

  /** Refuses a name in use (conflict "name") and a subnet that overlaps another network's (conflict "subnet"). */
  insertNetwork(n: NetworkRecord): void;
  getNetwork(name: string): NetworkRecord | undefined;
  listNetworks(): NetworkRecord[];
  /** Replaces the record (its op mark too); refuses to drop a subnet with leases, or a gateway somebody holds. */
  updateNetwork(n: NetworkRecord): void;
  /** Refuses while the network has leases. False when there was no such network. */
  deleteNetwork(name: string): boolean;

  insertContext(c: ContextRecord): void;
  getContext(name: string): ContextRecord | undefined;
  listContexts(): ContextRecord[];
  /**
   * Per context, a text that changes whenever its record does, without loading every record: for a view kept
   * current request by request (the DNS feed, engine/dns-feed.ts), which then loads only what changed.
   */
  contextFingerprints(): Map<string, string>;
  /** The routing tables contexts hold (spec.table), without loading every record. */
  contextTables(): number[];
  /** The contexts whose attachments name `ifname` as their host-side link (one, unless records were made by hand). */
  hostIfnameHolders(ifname: string): string[];
  /** Replaces the record (its op mark too). */
  updateContext(c: ContextRecord): void;
  deleteContext(name: string): boolean;

  /** One address per subnet of `network` for `owner`, the `requested` ones where given; all or nothing. */
  allocate(network: string, owner: string, requested?: string[]): Lease[];
  release(network: string, owner: string): number;
  releaseAll(owner: string): number;
  leases(filter?: { network?: string; owner?: string }): Lease[];

  /** Refuses a name in use (conflict "name") and more than MAX_POLICIES policies (exhausted). */
  insertPolicy(p: PolicyRecord): void;
  getPolicy(name: string): PolicyRecord | undefined;
  /** Ordered by name: a policy's bit in the data path's tables is its place in this list. */
  listPolicies(): PolicyRecord[];
  deletePolicy(name: string): boolean;
  /** Whether any policy exists or any network has `isolate` or `defaultDeny`: without, every packet passes. */
  policyActive(): boolean;
  /**
   * A number that changes whenever another process commits to the store and stays the same across this process's
   * own writes: a cache of records kept in this process knows when to read them again.
   */
  foreignWrites(): number;
  /**
   * Changes with every write of a network or a policy, by this process or another: records read under one revision
   * are still true while it holds. Undefined inside a transaction, whose reads may yet be rolled back.
   */
  policyInputsRevision(): string | undefined;
  /**
   * Changes with every write of any record, by this process or another (a rolled-back one may move it too): what
   * was derived from the records under one revision is still true while it holds. Undefined inside a transaction.
   */
  recordsRevision(): string | undefined;
}
