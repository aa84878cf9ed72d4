/**
 * The host netctx manages: its state store, a netlink socket in its network namespace and its firewall.
 * Normally the machine's own namespace; in tests and the demo a throwaway one.
 */
import type { Config } from "./config.ts";
import { Firewall } from "./firewall/firewall.ts";
import { claimTables, type TableClaim } from "./firewall/naming.ts";
import { Nft, type NftOptions } from "./firewall/nft.ts";
import { Rtnl } from "./kernel/rtnl.ts";
import { readSysctl, writeSysctl } from "./kernel/sysctl.ts";
import { LINK_GROUP } from "./model/names.ts";
import { storeMarkText } from "./model/store-mark.ts";
import { failPoint, pausePoint } from "./pause.ts";
import { ProcessLock } from "./state/lock.ts";
import type { StateStore } from "./state/state-store.ts";
import { Store } from "./state/store.ts";

/**
 * A kind of state a module keeps per Host (queues of deferred work, counts): `host.cache(slot)` makes it on first
 * use, and it goes with the Host. The module holds only the slot; two Hosts in one process never share the state.
 */
export interface HostSlot<T> {
  readonly make: () => T;
}

export function hostSlot<T>(make: () => T): HostSlot<T> {
  return { make };
}

/**
 * Removals that wait for a batch, keyed by interface name. Deleting nft set elements costs the kernel a grace period
 * per transaction (~10 ms here), not per element, so queued items leave together in `drop`, when the Host flushes
 * its deferred work or when `max` are waiting. `take` hands back an item still waiting under a name that has come
 * back, so its new owner's transaction can take the old elements out first.
 */
export function removalQueue<T>(drop: (host: Host, items: T[]) => void, max = 64) {
  const slot = hostSlot(() => new Map<string, T>());
  const waiting = (host: Host) => host.cache(slot);
  const flush = (host: Host) => {
    const queue = waiting(host);
    if (queue.size === 0) return;
    const items = [...queue.values()];
    queue.clear();
    drop(host, items);
  };
  return {
    put(host: Host, name: string, item: T): void {
      const queue = waiting(host);
      queue.set(name, item);
      if (queue.size >= max) flush(host);
      else host.defer(flush);
    },
    take(host: Host, name: string): T | undefined {
      const queue = waiting(host);
      const item = queue.get(name);
      queue.delete(name);
      return item;
    },
  };
}

/** The name of this store's nft tables (firewall/naming.ts), decided once: again only while it is not settled. */
const tableClaim = hostSlot((): { claim?: TableClaim } => ({}));

export class Host {
  private rtnlHandle: Rtnl | undefined;
  private firewallHandle: Firewall | undefined;
  private firewallLock: ProcessLock | undefined;
  private readonly deferred = new Set<(host: Host) => void>();
  private readonly caches = new Map<HostSlot<unknown>, unknown>();

  constructor(
    readonly store: StateStore,
    readonly config: Config,
  ) {}

  static open(config: Config): Host {
    return new Host(Store.open(config.stateDir), config);
  }

  /** Netlink socket in the host namespace, opened on first use (a listing never needs one). */
  get rtnl(): Rtnl {
    this.rtnlHandle ??= Rtnl.open();
    return this.rtnlHandle;
  }

  /**
   * Change our nft tables. Each change reads the table and writes a diff, so two processes changing it at once
   * could trip over each other: a lock file beside the state serialises them (see state/lock.ts).
   */
  firewall(change: (fw: Firewall) => void): void {
    this.firewallLock ??= new ProcessLock(this.store.dir, "firewall");
    this.firewallLock.hold(() => {
      const fw = this.ownFirewall();
      try {
        change(fw);
      } finally {
        // Our inet table went as idle: the next one claims its name anew, as a fresh store's first does (naming.ts:
        // another store may have taken `netctx` meanwhile).
        if (fw.takeReleased()) delete this.cache(tableClaim).claim;
      }
    });
  }

  /** The Firewall of this store's own tables (firewall/naming.ts: several stores on a host keep their own). */
  private ownFirewall(): Firewall {
    const slot = this.cache(tableClaim);
    if (!slot.claim?.settled)
      slot.claim = claimTables(new Nft(this.nftOptions), { id: this.store.id, dir: this.store.dir });
    const table = slot.claim.table;
    if (this.firewallHandle?.tableName !== table.name)
      this.firewallHandle = new Firewall({ ...this.nftOptions, table });
    return this.firewallHandle;
  }

  private get nftOptions(): NftOptions {
    return { binary: this.config.nftBinary, env: this.config.toolEnv };
  }

  /**
   * What every link netctx makes carries (model/names.ts, model/store-mark.ts): our group, and the store that made it
   * in its alias, so another store's gc leaves it alone.
   */
  get linkMark(): { group: number; alias: string } {
    return { group: LINK_GROUP, alias: storeMarkText({ id: this.store.id, dir: this.store.dir }) };
  }

  /** A crash test's pause point (see pause.ts): stops the process here, or fails, when the config names this step. */
  pause(step: string): void {
    failPoint(this.config.failAt, step);
    pausePoint(this.config.pauseAt, step);
  }

  /** This host's state of one kind (see HostSlot), made on first use. */
  cache<T>(slot: HostSlot<T>): T {
    if (this.caches.has(slot)) return this.caches.get(slot) as T;
    const made = slot.make();
    this.caches.set(slot, made);
    return made;
  }

  /** Routing between contexts and out through NAT needs forwarding; written only when it is off. */
  enableForwarding(): void {
    for (const key of ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]) {
      if (readSysctl(key).trim() !== "1") writeSysctl(key, "1");
    }
  }

  /**
   * Queue cleanup that may wait, so that many of them share one kernel commit (see antispoof.ts). The same
   * function queued twice runs once. It runs at flushDeferred(): the engine calls it when requests pause,
   * one-shot commands at close().
   */
  defer(work: (host: Host) => void): void {
    this.deferred.add(work);
  }

  get hasDeferred(): boolean {
    return this.deferred.size > 0;
  }

  /** Runs until nothing is queued: deferred work may queue more (a removal leaves its nft elements to a batch). */
  flushDeferred(): void {
    for (let work = this.next(); work; work = this.next()) work(this);
  }

  private next(): ((host: Host) => void) | undefined {
    const [work] = this.deferred;
    if (work) this.deferred.delete(work);
    return work;
  }

  close(): void {
    try {
      this.flushDeferred();
    } finally {
      this.closeHandles();
    }
  }

  private closeHandles(): void {
    this.rtnlHandle?.close();
    this.rtnlHandle = undefined;
    this.firewallLock?.close();
    this.store.close();
  }
}
