/**
 * `ls` and `inspect` from memory in a resident engine (issue 21): the last drift reading (reconcile/gc.ts readDrift)
 * is kept, and the kernel is read again only when something the reading rests on may have changed:
 *  - links, addresses, routes and rules of the host namespace and of every namespace of ours (each given an id in
 *    the host's first, so one socket hears them all: kernel/nsid.ts, kernel/notify.ts), and neighbours at the
 *    addresses the records declare as permanent ones (a neighbour table churns with traffic; no other entry counts);
 *  - nftables: any committed change, ours or anybody's (`nft flush ruleset`);
 *  - the mount table: a namespace bind-mounted or unmounted under /run/netns;
 *  - the contexts' cgroup directory: a cgroup made, removed, or its store mark changed;
 *  - the records: the store's revision, which this engine's writes and other processes' both move;
 *  - the engine's own requests (invalidate()), which the above would announce anyway.
 * What the kernel announces nowhere (programs attached to a cgroup or a port, a shortcut map's entries) is the
 * reading's recheck part, read again on every request. A kept reading is thus never older than the last
 * announcement it heard. The engine takes a new one in the background once it has been idle a while
 * (refreshIfIdle), so a listing seldom waits for one.
 */
import { statSync } from "node:fs";
import { type Host, hostSlot } from "../host.ts";
import { contextsCgroupParentPath } from "../kernel/cgroup.ts";
import { isNeighNotice, neighNoticeIp } from "../kernel/neigh.ts";
import type { Message } from "../kernel/netlink.ts";
import { listNetns, netnsPath } from "../kernel/netns.ts";
import { DirectoryWatch, MountTableWatch, NotificationSocket, RTNLGRP } from "../kernel/notify.ts";
import { NETNS_PREFIX } from "../model/names.ts";
import type { ContextRecord } from "../model/records.ts";
import { type DriftReading, missingOf, readDrift } from "./reconcile/gc.ts";

const RTNL_GROUPS = [
  RTNLGRP.link,
  RTNLGRP.neigh,
  RTNLGRP.ipv4Ifaddr,
  RTNLGRP.ipv6Ifaddr,
  RTNLGRP.ipv4Route,
  RTNLGRP.ipv6Route,
  RTNLGRP.ipv4Rule,
  RTNLGRP.ipv6Rule,
];

/** The engine's kept reading, when it keeps one (keepDriftReading). */
const KEPT = hostSlot((): { watch?: DriftWatch | undefined } => ({}));

export class DriftWatch {
  private reading: DriftReading | undefined;
  private revision: string | undefined;
  private stale = true;
  private readonly rtnl: NotificationSocket;
  private readonly nft: NotificationSocket;
  private readonly mounts: MountTableWatch;
  private readonly cgroups: DirectoryWatch | undefined;
  /** Our namespaces given an id, by name and inode (a namespace made again under a name is another). */
  private readonly named = new Set<string>();
  /** How long the last reading took, ms: the background one waits for longer idleness when it is dear. */
  lastCostMs = 0;

  constructor(private readonly host: Host) {
    this.rtnl = NotificationSocket.rtnl(RTNL_GROUPS, true);
    try {
      this.nft = NotificationSocket.nftables();
      this.mounts = new MountTableWatch();
      this.cgroups = cgroupWatch(host);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** What each ready context lacks (`only`: just these), from the kept reading unless it may be stale. */
  missing(only?: readonly string[]): Map<string, string[]> {
    return missingOf(this.current(), only);
  }

  /**
   * Every context record and what each ready one lacks, as `ls` shows them: the kept reading's records are the
   * store's while its revision holds, which a current reading has checked.
   */
  listing(): { contexts: ContextRecord[]; missing: Map<string, string[]> } {
    const reading = this.current();
    return { contexts: reading.contexts, missing: missingOf(reading) };
  }

  private current(): DriftReading {
    if (this.changed() || this.reading === undefined) this.refresh();
    return this.reading!;
  }

  /** Takes a new reading if the kept one may be stale; whether it did. */
  settle(): boolean {
    if (!this.changed()) return false;
    this.refresh();
    return true;
  }

  /** The engine changed something itself: the next request reads again. */
  invalidate(): void {
    this.stale = true;
  }

  /**
   * Whether the kept reading may be stale: invalidated, the records written, or something announced since it was
   * taken. Reads (and so consumes) what was announced; staleness stays until the next reading.
   */
  changed(): boolean {
    if (this.stale || this.reading === undefined) return true;
    const revision = this.host.store.recordsRevision();
    if (revision === undefined || revision !== this.revision || this.announced()) this.stale = true;
    return this.stale;
  }

  /** Takes a reading now. What is announced from here on makes it stale. */
  refresh(): void {
    const started = performance.now();
    this.reading = undefined;
    this.stale = false;
    // Consumed first, then ids given: a namespace made in between is announced again by the mount table.
    this.announced();
    this.nameNamespaces();
    this.revision = this.host.store.recordsRevision();
    this.reading = readDrift(this.host);
    this.lastCostMs = performance.now() - started;
  }

  close(): void {
    this.rtnl?.close();
    this.nft?.close();
    this.mounts?.close();
    this.cgroups?.close();
  }

  /** Every source read to the end, so each announcement is consumed once. */
  private announced(): boolean {
    const routing = this.rtnl.drain((m) => this.relevant(m));
    const firewall = this.nft.drain();
    const mounts = this.mounts.changed();
    const cgroups = this.cgroups?.changed() ?? false;
    return routing || firewall || mounts || cgroups;
  }

  private relevant(m: Message): boolean {
    if (!isNeighNotice(m)) return true;
    const ip = neighNoticeIp(m);
    return ip !== undefined && (this.reading?.neighbourIps.has(ip) ?? true);
  }

  /** Our namespaces get an id in the host's before they are read, so what changes in them afterwards is heard. */
  private nameNamespaces(): void {
    const now = new Set<string>();
    for (const name of listNetns().filter((n) => n.startsWith(NETNS_PREFIX))) {
      const path = netnsPath(name);
      let key: string;
      try {
        key = `${name} ${statSync(path).ino}`;
      } catch {
        continue; // gone meanwhile: the mount table announces it
      }
      now.add(key);
      if (this.named.has(key)) continue;
      try {
        this.host.rtnl.netnsIdEnsure(path);
      } catch {
        continue; // not a namespace (an empty mount point): nothing inside to hear, and the reading shows it
      }
      this.named.add(key);
    }
    for (const key of this.named) if (!now.has(key)) this.named.delete(key);
  }
}

function cgroupWatch(host: Host): DirectoryWatch | undefined {
  let parent: string;
  try {
    parent = contextsCgroupParentPath(host.config.cgroupParent);
  } catch {
    return undefined; // no cgroup v2: no cgroups of ours either
  }
  return new DirectoryWatch(parent);
}

/** From now on `ls` and `inspect` on this Host read from a kept reading (views.ts); stop() ends it. */
export function keepDriftReading(host: Host): DriftWatch {
  const kept = host.cache(KEPT);
  kept.watch ??= new DriftWatch(host);
  return kept.watch;
}

export function keptDriftReading(host: Host): DriftWatch | undefined {
  return host.cache(KEPT).watch;
}

export function dropDriftReading(host: Host): void {
  const kept = host.cache(KEPT);
  kept.watch?.close();
  kept.watch = undefined;
}
