/**
 * The engine's side of overlay networks (issue 18): the networks live in etcd (cluster/overlay-state.ts) and every
 * engine mirrors them into its own store, where they are cluster-scoped NetworkRecords whose IPAM hands out only
 * addresses of the blocks this node leased (state/ipam.ts). etcd is asked when a network is made or removed and when
 * a node needs a block; a create whose block has room never waits for etcd, and keeps working while etcd is away.
 *
 * The mirror is level-triggered: every pass reads all of /netctx/v1/networks/ and makes the store agree, so a watch
 * event missed while etcd was unreachable costs nothing; the watch only makes a pass come sooner, and a pass also
 * runs every RESYNC_MS. Block work (lease, give back, re-claim, the orphan sweep) runs one at a time, so a block
 * being given back is never re-adopted halfway.
 *
 * The data path follows etcd's node records and blocks: after every mirror pass, and whenever a node record or a
 * block changes (a watch, so a node whose lease ran out leaves its peers' kernels within a second of its record),
 * each overlay network's peers (cluster/peers.ts peersOf) are programmed with syncPeers, which touches only what
 * changed, and the member guard holds every current node's underlay address (syncMembers).
 */

import { blockGateway, blockHolds, blockLength } from "../cluster/blocks.ts";
import type { Etcd, PrefixWatch } from "../cluster/etcd.ts";
import { BLOCKS, NETWORKS, NODES, nodeOfKey } from "../cluster/keys.ts";
import type { ClusterMember } from "../cluster/member.ts";
import { type BlockRef, parseNodeRecord } from "../cluster/node-record.ts";
import {
  createOverlayNetwork,
  holdBlock,
  leaseBlock,
  networkBlocks,
  type OverlayNetwork,
  overlayNetworks,
  releaseBlock,
  removeOverlayNetwork,
  sweepOrphanBlocks,
} from "../cluster/overlay-state.ts";
import { peersOf } from "../cluster/peers.ts";
import { conflict, errorLine, invalid, notFound } from "../errors.ts";
import { type DirectPath, syncDirectPaths } from "../firewall/overlay-direct.ts";
import { dropMemberGuard, syncMembers } from "../firewall/overlay-members.ts";
import type { Host } from "../host.ts";
import { KernelError } from "../kernel/errors.ts";
import { specOf } from "../levels/driver.ts";
import { bridgeIfname } from "../model/names.ts";
import type { ContextRecord, NetworkRecord } from "../model/records.ts";
import { cidrContains, parseInterfaceAddress, parseIp, parseSubnet } from "../net/cidr.ts";
import { familyOf, tolerateMissing } from "../networks/common.ts";
import { directRouting, overlayDriver, overlayLocal } from "../networks/overlay.ts";
import { directPaths, ensureOverlayDevice, overlayIfname, syncPeers } from "../networks/overlay-peers.ts";
import { networkDriver } from "../networks/registry.ts";
import { BlockNeeded } from "../state/ipam.ts";
import { createContext, removeContext } from "./contexts.ts";
import { checkedNetwork, makeNetwork, refuseNetworkUsers, removeNetwork } from "./networks.ts";
import { OverlayNames } from "./overlay-names.ts";

/** The mirror's safety net: a full pass this often, whatever the watch says. */
const RESYNC_MS = 5000;
/** A block given back this soon after it was leased could be one a create is about to fill: the sweep waits. */
const IDLE_BLOCK_MS = 10_000;
/** Blocks leased per create at most (one per subnet, with a retry each when another node won the race). */
const LEASE_ATTEMPTS = 4;
/** Bytes VXLAN adds: outer Ethernet 14 + VXLAN 8 + UDP 8 + IP 20 (IPv4 underlay) or 40 (IPv6). */
const VXLAN_OVERHEAD = { 4: 50, 6: 70 } as const;

export interface OverlayOptions {
  /** Seconds a gone node's blocks stay leased before any engine frees them (serve --block-grace). */
  graceSeconds: number;
  log: (line: string) => void;
}

/** Counts for the bench and the engine's /v1/overlay/stats. */
export interface OverlayStats {
  /** Context creates on overlay networks. */
  creates: number;
  /** etcd requests those creates waited for (0 while their blocks had room). */
  createEtcdRequests: number;
  /** Blocks this engine leased. */
  blockLeases: number;
  /** Blocks it gave back. */
  blockReleases: number;
  /** Every request this engine's etcd client sent (renewals and the mirror's passes too). */
  etcdRequests: number;
  /** Mirror passes, and the last one's error while it fails. */
  syncs: number;
  syncError?: string;
  /** Per overlay network, what the data path passes (syncPeers) did to this host's kernel. */
  peers: Record<string, PeerPathStats>;
}

/** The data path's work for one network: totals over its passes, and the last pass that changed anything. */
export interface PeerPathStats {
  /** Peers programmed as of the last pass. */
  peers: number;
  /** Passes that changed the kernel. */
  passes: number;
  /** Kernel requests that changed it (syncPeers' kernelOps), summed: a peer joining costs the difference. */
  kernelOps: number;
  added: number;
  removed: number;
  changed: number;
  last?: { peers: number; kernelOps: number; added: number; removed: number; changed: number; at: string };
}

/** A block as `network inspect` shows it. */
export interface BlockView {
  cidr: string;
  node: string;
  since: string;
  orphanedSince?: string;
}

export class OverlayEngine {
  private readonly etcd: Etcd;
  /** Names across hosts: this node's published, the others' read (overlay-names.ts). */
  readonly names: OverlayNames;
  private readonly node: string;
  private readonly member: ClusterMember;
  private peerWatches: PrefixWatch[] = [];
  private peersKicked: NodeJS.Timeout | undefined;
  private peersPass: Promise<void> | undefined;
  private peersAgain = false;
  /** Per network, the last data path complaint, logged once until it changes. */
  private readonly pathComplaints = new Map<string, string>();
  private readonly stats = { creates: 0, createEtcdRequests: 0, blockLeases: 0, blockReleases: 0, syncs: 0 };
  private readonly peerStats = new Map<string, PeerPathStats>();
  private syncError: string | undefined;
  private watch: PrefixWatch | undefined;
  private timer: NodeJS.Timeout | undefined;
  private kicked: NodeJS.Timeout | undefined;
  /** The chain block work runs on, one at a time. */
  private chain: Promise<unknown> = Promise.resolve();
  private pass: Promise<void> | undefined;
  private again = false;
  /** When this engine leased each block it holds (cidr -> ms), for IDLE_BLOCK_MS. */
  private readonly leasedAt = new Map<string, number>();
  /** Networks the mirror could not make or remove, logged once each until that changes. */
  private readonly complaints = new Map<string, string>();
  /** Whether the firewall holds direct paths of this engine's (undefined: not known yet, until the first pass). */
  private directHeld: boolean | undefined;

  constructor(
    private readonly host: Host,
    member: ClusterMember,
    private readonly o: OverlayOptions,
  ) {
    this.etcd = member.etcd;
    this.node = member.name;
    this.member = member;
    this.names = new OverlayNames(host, member.etcd, member.name, o.log);
  }

  /** Watches the networks and starts the periodic passes; never waits for etcd. */
  start(): void {
    this.names.start();
    this.watch = this.etcd.watchPrefix(NETWORKS, () => this.kick(), this.o.log);
    // The etcd client gives a watch no deadline: a node record deleted by its lease's expiry arrives here at once.
    this.peerWatches = [NODES, BLOCKS].map((p) =>
      this.etcd.watchPrefix(p, () => this.kickPeers(), this.o.log),
    );
    this.timer = setInterval(() => void this.sync(), RESYNC_MS);
    this.kick();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearTimeout(this.kicked);
    clearTimeout(this.peersKicked);
    await this.watch?.close().catch(() => {});
    await this.names.stop();
    await Promise.all(this.peerWatches.map((w) => w.close().catch(() => {})));
    await this.pass;
    await this.peersPass;
  }

  /** What the node record says this node holds (serve.ts facts()). */
  blocks(): BlockRef[] {
    return this.host.store
      .listNetworks()
      .flatMap((n) => (n.cluster?.blocks ?? []).map((b) => ({ network: n.name, cidr: b.cidr })));
  }

  /** The node's VTEP MAC, as its overlay devices have it ("" while it has none): the node record's vtepMac. */
  vtepMac(): string {
    for (const net of this.host.store.listNetworks()) {
      if (!net.cluster) continue;
      const mac = this.host.rtnl.linkGet(overlayIfname(net.name))?.mac;
      if (mac) return mac;
    }
    return "";
  }

  /**
   * MAC of the device holding this node's underlay address (the node record's underlayMac), undefined while there is
   * none: peers with an internal direct-routed network let in direct packets from this MAC only.
   */
  underlayMac(): string | undefined {
    try {
      return this.host.rtnl.linkGet(this.underlayDevice().ifname)?.mac?.toLowerCase() || undefined;
    } catch {
      return undefined;
    }
  }

  statsView(): OverlayStats {
    return {
      ...this.stats,
      etcdRequests: this.etcd.requests,
      ...(this.syncError !== undefined ? { syncError: this.syncError } : {}),
      peers: Object.fromEntries([...this.peerStats].map(([n, p]) => [n, { ...p }])),
    };
  }

  // ---- networks

  /** `network create --driver overlay`: written to etcd, then mirrored here at once. */
  async createNetwork(raw: unknown): Promise<NetworkRecord> {
    const checked = checkedNetwork(this.host, raw);
    if (this.host.store.getNetwork(checked.name))
      throw conflict("name", `network "${checked.name}" already exists`);
    const v4Block = blockOption(checked.options["block"]);
    const record = await createOverlayNetwork(this.etcd, {
      name: checked.name,
      subnets: checked.subnets.map((s) => {
        const cidr = parseSubnet(s.cidr, "subnet");
        return { cidr: cidr.text, block: blockLength(cidr, cidr.family === 4 ? v4Block : undefined) };
      }),
      nat: checked.nat,
      internal: checked.internal,
      // 0: each node's underlay MTU less the encapsulation (mirrorOne); nodes' underlays may differ.
      mtu: givenMtu(raw) ? checked.mtu : 0,
      options: checked.options,
      createdBy: this.node,
      createdAt: new Date().toISOString(),
    });
    return this.mirrorOne(record);
  }

  /** `network rm` of an overlay network: refused while a block of it is leased anywhere; then gone here too. */
  async removeNetwork(name: string): Promise<NetworkRecord> {
    const local = this.host.store.getNetwork(name);
    if (local) refuseNetworkUsers(this.host, name);
    return this.exclusive(async () => {
      await removeOverlayNetwork(this.etcd, name, this.node, (cidr) => this.leasesIn(name, cidr) === 0);
      if (!this.host.store.getNetwork(name)) return local ?? notFoundNet(name);
      return removeNetwork(this.host, name, { mirror: true });
    });
  }

  /** The network's blocks as etcd has them (for `network inspect`). */
  async networkBlocks(name: string): Promise<BlockView[]> {
    const net = this.host.store.getNetwork(name);
    if (!net?.cluster) throw notFound("overlay network", name);
    return (await networkBlocks(this.etcd, name)).map(({ record: b }) => ({
      cidr: b.cidr,
      node: b.node,
      since: b.since,
      ...(b.orphanedSince ? { orphanedSince: b.orphanedSince } : {}),
    }));
  }

  // ---- contexts

  /**
   * createContext, leasing a block in etcd first when the node's blocks of a network have no room. The first try
   * needs no etcd; only a create that needs a block waits (and fails within the etcd client's bound without it).
   */
  async createContext(raw: unknown): Promise<ContextRecord> {
    this.stats.creates++;
    return this.withBlocks(() => createContext(this.host, raw));
  }

  /**
   * Runs `make` (a create, a CNI ADD, an apply); when it needs a block of an overlay network that this node's blocks
   * have no room for (BlockNeeded), leases one in etcd and runs it again. The first try needs no etcd. `attempts`:
   * tries at most (an apply may need a block per subnet and more as blocks fill up).
   */
  async withBlocks<T>(make: () => T, attempts = LEASE_ATTEMPTS): Promise<T> {
    try {
      return make();
    } catch (err) {
      if (!(err instanceof BlockNeeded)) throw err;
    }
    return this.exclusive(async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          return make();
        } catch (err) {
          if (!(err instanceof BlockNeeded) || attempt >= attempts) throw err;
          const before = this.etcd.requests;
          try {
            await this.lease(err.network, err.subnet);
          } finally {
            this.stats.createEtcdRequests += this.etcd.requests - before;
          }
        }
      }
    });
  }

  /** removeContext; blocks of overlay networks it leaves empty are given back in etcd afterwards. */
  removeContext(name: string, force: boolean): boolean {
    const found = this.host.store.getContext(name);
    const removed = removeContext(this.host, name, { force }) !== undefined;
    const networks = found ? specOf(found).attachments.map((a) => a.network) : [];
    if (networks.some((n) => this.host.store.getNetwork(n)?.cluster))
      void this.exclusive(() => this.giveBackIdle(networks, 0)).catch((err) =>
        this.o.log(`overlay: giving back empty blocks failed (retried later): ${errorLine(err)}`),
      );
    return removed;
  }

  /** Whether a request body names an overlay network (the API routes those creates here). */
  namesClusterNetwork(networks: readonly unknown[]): boolean {
    return networks.some(
      (n) => typeof n === "string" && this.host.store.getNetwork(n)?.cluster !== undefined,
    );
  }

  // ---- blocks

  private async lease(network: string, subnet: string): Promise<void> {
    const block = await leaseBlock(this.etcd, network, subnet, this.node);
    this.stats.blockLeases++;
    try {
      this.addLocalBlock(network, block.cidr);
    } catch (err) {
      await releaseBlock(this.etcd, network, block.cidr, this.node).catch(() => {});
      throw err;
    }
    this.o.log(`overlay: node ${this.node} leased block ${block.cidr} of network ${network}`);
  }

  /** The block joins the network's record here (its addresses become this node's to hand out) and its gateway nc-NET. */
  private addLocalBlock(network: string, cidr: string): void {
    const net = this.host.store.getNetwork(network);
    if (!net?.cluster) throw notFound("network", network);
    if (net.cluster.blocks.some((b) => b.cidr === cidr)) return;
    const gateway = blockGateway(cidr);
    const updated = {
      ...net,
      cluster: { ...net.cluster, blocks: [...net.cluster.blocks, { cidr, gateway }] },
    };
    this.host.store.updateNetwork(updated);
    this.leasedAt.set(`${network} ${cidr}`, Date.now());
    this.deviceFor(updated);
    try {
      this.host.rtnl.addrAdd(bridgeIfname(network), `${gateway}/${cidr.split("/")[1]}`, {
        nodad: familyOf(gateway) === 6,
      });
    } catch (err) {
      // Already there (a restart), or the device is missing: the reconcile loop makes what the record declares.
      if (!(err instanceof KernelError)) throw err;
    }
  }

  private dropLocalBlock(network: string, cidr: string): void {
    const net = this.host.store.getNetwork(network);
    if (!net?.cluster) return;
    const updated = {
      ...net,
      cluster: { ...net.cluster, blocks: net.cluster.blocks.filter((b) => b.cidr !== cidr) },
    };
    this.host.store.updateNetwork(updated);
    this.leasedAt.delete(`${network} ${cidr}`);
    this.deviceFor(updated);
    const gateway = blockGateway(cidr);
    tolerateMissing(() => this.host.rtnl.addrDel(bridgeIfname(network), `${gateway}/${cidr.split("/")[1]}`));
  }

  private leasesIn(network: string, cidr: string): number {
    return this.host.store.leases({ network }).filter((l) => blockHolds(cidr, l.address)).length;
  }

  /**
   * Blocks of these networks with no lease here leave the store at once (no create can take an address in them any
   * more) and are then deleted in etcd. `minAgeMs`: younger blocks stay (one a create is filling right now).
   */
  private async giveBackIdle(networks: readonly string[], minAgeMs: number): Promise<void> {
    const idle: [string, string][] = [];
    for (const name of new Set(networks)) {
      const net = this.host.store.getNetwork(name);
      for (const b of net?.cluster?.blocks ?? []) {
        const age = Date.now() - (this.leasedAt.get(`${name} ${b.cidr}`) ?? 0);
        if (age >= minAgeMs && this.leasesIn(name, b.cidr) === 0) idle.push([name, b.cidr]);
      }
    }
    for (const [name, cidr] of idle) this.dropLocalBlock(name, cidr);
    for (const [name, cidr] of idle) {
      await releaseBlock(this.etcd, name, cidr, this.node);
      this.stats.blockReleases++;
      this.o.log(`overlay: node ${this.node} gave back block ${cidr} of network ${name}`);
    }
  }

  // ---- the mirror

  /** A pass soon (the watch saw a change, or reconnected). */
  private kick(): void {
    clearTimeout(this.kicked);
    this.kicked = setTimeout(() => void this.sync(), 50);
  }

  /** One pass at a time; a pass asked for while one runs runs once more after it. */
  sync(): Promise<void> {
    if (this.pass) {
      this.again = true;
      return this.pass;
    }
    this.pass = this.exclusive(() => this.syncOnce())
      .then(
        () => {
          if (this.syncError !== undefined) this.o.log("overlay: etcd answers again; networks mirrored");
          this.syncError = undefined;
        },
        (err) => {
          const line = errorLine(err);
          if (this.syncError === undefined) this.o.log(`overlay: mirror pass failed (retried): ${line}`);
          this.syncError = line;
        },
      )
      .finally(() => {
        this.pass = undefined;
        if (this.again) {
          this.again = false;
          void this.sync();
        }
      });
    return this.pass;
  }

  private async syncOnce(): Promise<void> {
    this.stats.syncs++;
    const records = await overlayNetworks(this.etcd);
    this.mirror(records);
    await this.reconcileBlocks();
    const alive = new Set((await this.etcd.range(NODES)).map((e) => nodeOfKey(e.key)));
    // Our own record may not be written yet (a restart): we are alive all the same.
    alive.add(this.node);
    for (const b of await sweepOrphanBlocks(this.etcd, alive, this.o.graceSeconds))
      this.o.log(
        `overlay: block ${b.cidr} of network ${b.network} freed: node ${b.node} gone longer than the grace period`,
      );
    await this.syncPeersOnce();
  }

  /** The store's cluster-scoped networks made to agree with etcd's. */
  private mirror(records: readonly OverlayNetwork[]): void {
    const wanted = new Map(records.map((r) => [r.name, r]));
    for (const r of records) {
      const existing = this.host.store.getNetwork(r.name);
      if (existing?.cluster) this.attempt(r.name, () => this.underlayOf(existing));
      else this.attempt(r.name, () => this.mirrorOne(r));
    }
    for (const net of this.host.store.listNetworks()) {
      if (!net.cluster || wanted.has(net.name)) continue;
      this.attempt(net.name, () => {
        // Its blocks are gone with it in etcd (rm refuses while any is leased): ours go here too.
        for (const b of net.cluster!.blocks)
          if (this.leasesIn(net.name, b.cidr) === 0) this.dropLocalBlock(net.name, b.cidr);
        removeNetwork(this.host, net.name, { mirror: true });
        this.o.log(`overlay: network ${net.name} removed (gone from etcd)`);
      });
    }
  }

  private mirrorOne(r: OverlayNetwork): NetworkRecord {
    const existing = this.host.store.getNetwork(r.name);
    if (existing?.cluster) return existing;
    if (existing)
      throw conflict("name", `overlay network "${r.name}" clashes with this host's own network of that name`);
    const under = this.underlayDevice();
    const record = makeNetwork(this.host, {
      name: r.name,
      driver: overlayDriver.name,
      subnets: r.subnets.map((s) => ({ cidr: s.cidr })),
      nat: r.nat,
      internal: r.internal,
      mtu: r.mtu || under.mtu - VXLAN_OVERHEAD[familyOf(this.member.underlay)],
      options: r.options,
      cluster: {
        vni: r.vni,
        node: this.node,
        blockLengths: r.subnets.map((s) => s.block),
        blocks: [],
        underlay: this.member.underlay,
        underlayDev: under.ifname,
      },
      createdAt: r.createdAt,
    });
    this.o.log(`overlay: network ${r.name} mirrored (vni ${r.vni}, VXLAN over ${under.ifname})`);
    this.member.refresh();
    return record;
  }

  /** The device holding this node's underlay address, and its MTU. */
  private underlayDevice(): { ifname: string; mtu: number } {
    const address = parseIp(this.member.underlay, "underlay").text;
    const held = this.host.rtnl
      .addrList()
      .find((a) => parseIp(a.cidr.split("/")[0]!, "address").text === address);
    const link = held && this.host.rtnl.linkGet(held.ifname);
    if (!link)
      throw invalid("underlay", `no device of this host holds the underlay address ${this.member.underlay}`);
    return { ifname: link.name, mtu: link.mtu };
  }

  /**
   * A mirrored network learns this node's underlay (one mirrored before the engine knew it, or the underlay
   * moved): the record says where the VXLAN device sits, and the device is made or moved to match.
   */
  private underlayOf(net: NetworkRecord): void {
    const c = net.cluster!;
    const under = this.underlayDevice();
    if (c.underlay === this.member.underlay && c.underlayDev === under.ifname) return;
    const updated = { ...net, cluster: { ...c, underlay: this.member.underlay, underlayDev: under.ifname } };
    this.host.store.updateNetwork(updated);
    this.deviceFor(updated);
    this.member.refresh();
  }

  /** The network's VXLAN device in line with its record (its VTEP addresses follow the node's blocks). */
  private deviceFor(net: NetworkRecord): void {
    const local = overlayLocal(net);
    if (!local) return;
    ensureOverlayDevice(this.host, local);
    this.host.firewall((fw) => fw.addInterface(net.name, overlayIfname(net.name)));
  }

  // ---- the data path

  /** A data path pass soon (a node record or a block changed). */
  private kickPeers(): void {
    clearTimeout(this.peersKicked);
    this.peersKicked = setTimeout(() => void this.syncPeersOnce().catch(() => {}), 20);
  }

  /** One data path pass at a time; one asked for meanwhile runs once more after it. Never throws. */
  private syncPeersOnce(): Promise<void> {
    if (this.peersPass) {
      this.peersAgain = true;
      return this.peersPass;
    }
    this.peersPass = this.programPeers()
      .catch((err) => {
        const line = errorLine(err);
        if (this.pathComplaints.get("") !== line)
          this.o.log(`overlay: data path pass failed (retried): ${line}`);
        this.pathComplaints.set("", line);
      })
      .finally(() => {
        this.peersPass = undefined;
        if (this.peersAgain) {
          this.peersAgain = false;
          void this.syncPeersOnce();
        }
      });
    return this.peersPass;
  }

  /**
   * Every overlay network's peers, from the node records (who is alive, where, with which VTEP MAC) and the blocks
   * (what to route where), programmed as a diff; the member guard holds the live nodes' underlay addresses.
   */
  private async programPeers(): Promise<void> {
    const nodes = (await this.etcd.range(NODES)).flatMap((e) => parseNodeRecord(e.value) ?? []);
    const blocks = (await networkBlocks(this.etcd)).map((b) => b.record);
    this.pathComplaints.delete("");
    const nets = this.host.store.listNetworks().filter((n) => overlayLocal(n) !== undefined);
    const directAll: DirectPath[] = [];
    for (const net of nets) {
      const local = overlayLocal(net)!;
      try {
        ensureOverlayDevice(this.host, local);
        const direct = directRouting(net) ? this.onUnderlaySegment(local.underlayDev) : undefined;
        const peers = peersOf(net.name, nodes, blocks, this.node, direct);
        const done = syncPeers(this.host, local, peers);
        // An internal network reaches its direct peers' blocks through the firewall's exact paths, nothing else.
        if (net.internal && direct !== undefined) directAll.push(...directPaths(local, peers));
        const counts = this.peerStats.get(net.name) ?? {
          peers: 0,
          passes: 0,
          kernelOps: 0,
          added: 0,
          removed: 0,
          changed: 0,
        };
        counts.peers = peers.length;
        if (done.kernelOps > 0) {
          counts.passes++;
          counts.kernelOps += done.kernelOps;
          counts.added += done.added;
          counts.removed += done.removed;
          counts.changed += done.changed;
          const { kernelOps, added, removed, changed } = done;
          counts.last = {
            peers: peers.length,
            kernelOps,
            added,
            removed,
            changed,
            at: new Date().toISOString(),
          };
        }
        this.peerStats.set(net.name, counts);
        if (done.added + done.removed + done.changed > 0)
          this.o.log(
            `overlay: network ${net.name}: ${peers.length} peer(s) [${abbreviated(peers.map((p) => p.node))}]: ` +
              `${done.added} entries added, ${done.removed} removed, ${done.changed} changed, ` +
              `${done.kernelOps} kernel request(s)`,
          );
        const trouble = [
          ...done.skipped.map((s) => `peer ${s.node} left out: ${s.reason}`),
          ...done.failed.map((f) => `${f.entry}: ${f.error}`),
        ].join("; ");
        if (trouble && this.pathComplaints.get(net.name) !== trouble)
          this.o.log(`overlay: network ${net.name}: ${trouble}`);
        this.pathComplaints.set(net.name, trouble);
      } catch (err) {
        const line = errorLine(err);
        if (this.pathComplaints.get(net.name) !== line) this.o.log(`overlay: network ${net.name}: ${line}`);
        this.pathComplaints.set(net.name, line);
      }
    }
    // A listing of the table costs a fork: a host with no such network asks once (leftovers of an earlier run go).
    if (directAll.length > 0 || this.directHeld !== false) {
      syncDirectPaths(this.host, directAll);
      this.directHeld = directAll.length > 0;
    }
    if (nets.length > 0)
      syncMembers(
        this.host,
        nodes.filter((n) => n.name !== this.node).map((n) => n.underlay),
      );
    else dropMemberGuard(this.host);
  }

  /** Whether an underlay address is on a subnet of the underlay device (flannel's DirectRouting test). */
  private onUnderlaySegment(dev: string): (underlay: string) => boolean {
    const nets = this.host.rtnl
      .addrList(dev)
      .filter((a) => a.scope === "global")
      .map((a) => parseInterfaceAddress(a.cidr, "address"));
    return (underlay) => {
      const ip = parseIp(underlay, "underlay");
      return nets.some((n) => cidrContains(n, ip.family, ip.addr));
    };
  }

  /** Runs one mirror step; a failure is logged once per network (until it changes) and tried again next pass. */
  private attempt(network: string, step: () => void): void {
    try {
      step();
      this.complaints.delete(network);
    } catch (err) {
      const line = errorLine(err);
      if (this.complaints.get(network) !== line) this.o.log(`overlay: network ${network}: ${line}`);
      this.complaints.set(network, line);
    }
  }

  /**
   * This node's blocks in etcd and in the store made to agree: a block etcd gives this node that the store lacks is
   * taken back (a restart whose store lost it); a block the store has addresses in that etcd lost (`cluster forget`
   * of a live node, the grace period run out while it was cut off) is claimed again if no other node took it;
   * blocks with no address for a while are given back.
   */
  private async reconcileBlocks(): Promise<void> {
    const inEtcd = (await networkBlocks(this.etcd)).filter((b) => b.record.node === this.node);
    for (const { record: b } of inEtcd) {
      const net = this.host.store.getNetwork(b.network);
      if (!net?.cluster || net.cluster.blocks.some((h) => h.cidr === b.cidr)) continue;
      this.attempt(b.network, () => this.addLocalBlock(b.network, b.cidr));
      this.o.log(`overlay: node ${this.node} took back its block ${b.cidr} of network ${b.network}`);
    }
    const mine = new Map(inEtcd.map((b) => [`${b.record.network} ${b.record.cidr}`, b.record]));
    for (const net of this.host.store.listNetworks()) {
      for (const b of net.cluster?.blocks ?? []) {
        const there = mine.get(`${net.name} ${b.cidr}`);
        if (there && there.orphanedSince === undefined) continue;
        if (!there && this.leasesIn(net.name, b.cidr) === 0) {
          this.dropLocalBlock(net.name, b.cidr);
          continue;
        }
        if (!(await holdBlock(this.etcd, net.name, b.cidr, this.node)))
          this.o.log(
            `overlay: block ${b.cidr} of network ${net.name} has addresses here but another node holds it in etcd`,
          );
      }
    }
    await this.giveBackIdle(
      this.host.store.listNetworks().flatMap((n) => (n.cluster ? [n.name] : [])),
      IDLE_BLOCK_MS,
    );
  }

  /** Runs fn after every block operation queued before it. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => {});
    return run;
  }
}

/** Node names for a log line: all of a few, the first ones and a count of many (1000 simulated peers). */
function abbreviated(names: readonly string[]): string {
  return names.length <= 12
    ? names.join(" ")
    : `${names.slice(0, 10).join(" ")} ... and ${names.length - 10} more`;
}

function notFoundNet(name: string): never {
  throw notFound("network", name);
}

/** --block (-o block=N): the IPv4 block length. */
function blockOption(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value).replace(/^\//, "");
  if (!/^\d+$/.test(text)) throw invalid("block", `"${String(value)}" is not a prefix length`);
  return Number(text);
}

/** Whether a network input names its MTU (else each node derives it from its underlay). */
function givenMtu(raw: unknown): boolean {
  return typeof raw === "object" && raw !== null && (raw as { mtu?: unknown }).mtu !== undefined;
}

/** Whether the driver named in a network input makes cluster-scoped networks. */
export function clusterScopedDriver(name: unknown): boolean {
  if (typeof name !== "string") return false;
  try {
    return networkDriver(name).scope === "cluster";
  } catch {
    return false;
  }
}
