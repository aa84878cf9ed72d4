/**
 * The host netctx manages: its state store, a netlink socket in its network namespace and its firewall.
 * Normally the machine's own namespace; in tests and the demo a throwaway one.
 */
import { Firewall } from "./firewall/firewall.ts";
import { Rtnl } from "./kernel/rtnl.ts";
import { readSysctl, writeSysctl } from "./kernel/sysctl.ts";
import { ProcessLock } from "./state/lock.ts";
import { Store } from "./state/store.ts";

/** State a module keeps per Host (queues of deferred work): made on first use, gone with the Host. */
export function perHost<T>(make: () => T): (host: Host) => T {
  const byHost = new WeakMap<Host, T>();
  return (host) => {
    const known = byHost.get(host);
    if (known !== undefined) return known;
    const made = make();
    byHost.set(host, made);
    return made;
  };
}

/**
 * Removals that wait for a batch, keyed by interface name. Deleting nft set elements costs the kernel a grace period
 * per transaction (~10 ms here), not per element, so queued items leave together in `drop`, when the Host flushes
 * its deferred work or when `max` are waiting. `take` hands back an item still waiting under a name that has come
 * back, so its new owner's transaction can take the old elements out first.
 */
export function removalQueue<T>(drop: (host: Host, items: T[]) => void, max = 64) {
  const waiting = perHost(() => new Map<string, T>());
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

export class Host {
  private rtnlHandle: Rtnl | undefined;
  private firewallHandle: Firewall | undefined;
  private firewallLock: ProcessLock | undefined;
  private readonly deferred = new Set<(host: Host) => void>();

  constructor(readonly store: Store) {}

  static open(stateDir?: string): Host {
    return new Host(Store.open(stateDir));
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
    this.firewallHandle ??= new Firewall();
    this.firewallLock ??= new ProcessLock(this.store.dir, "firewall");
    const fw = this.firewallHandle;
    this.firewallLock.hold(() => change(fw));
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
