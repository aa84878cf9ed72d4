/**
 * One interface for every network driver (netavark's NetworkDriver): adding a driver never touches the others.
 */
import type { PortKind } from "../firewall/antispoof.ts";
import type { Host } from "../host.ts";
import type { AddrOpts, Rtnl } from "../kernel/rtnl.ts";
import type { Attachment } from "../model/attachment.ts";
import type { Lease, Level, NetworkRecord } from "../model/records.ts";
import type { Declarer, Present } from "./ownership.ts";

/** The context side of an attachment: its netns and a netlink socket bound inside it. */
export interface ContextNetns {
  path: string;
  rtnl: Rtnl;
}

export interface DeviceAddress {
  cidr: string;
  opts: AddrOpts;
}

/** What the walker over the records knows of an l2 context when its attachment declares what it owns. */
export interface AttachedContext {
  /** Its netns. */
  netns: string;
  /** The host-side link that carries the context's bandwidth limits (networks/bandwidth.ts), if any. */
  shapedIfname: string | undefined;
  /** A container runtime's netns (CNI): its insides are the runtime's, neither declared nor looked into. */
  external: boolean;
}

export interface NetworkDriver {
  readonly name: string;
  /** Levels whose contexts may join networks of this driver. */
  readonly levels: readonly Level[];
  /** The driver options (`-o KEY=VALUE`, `options:` in a file) it reads, each with what it means; others are refused. */
  readonly options: Readonly<Record<string, string>>;
  /** Its contexts share one L2 segment (ARP and Neighbour Discovery reach each other), not a link each to the host. */
  readonly sharedSegment: boolean;
  /**
   * "cluster": its networks span hosts; their records live in etcd and every node mirrors them (engine/overlay.ts),
   * so only an engine that is a cluster member creates or removes one. Absent: the network is this host's.
   */
  readonly scope?: "cluster";
  /** Where the anti-spoofing of its l2 contexts' host-side ports sits (firewall/antispoof.ts); none when absent. */
  readonly portGuard?: PortKind;
  /** The host device an attachment's traffic enters the host by; undefined when the host is not on its path. */
  hostDevice(net: NetworkRecord, att: Attachment): string | undefined;
  /** The host-side interfaces a CNI result lists for an attachment, before the container's own. */
  hostInterfaces(net: NetworkRecord, att: Attachment): string[];
  /**
   * The network's own kernel objects and firewall parts, and how to make each (engine/reconcile). `attachments`:
   * those of its l2 contexts, for a device that has to be made again with its ports.
   */
  declare(host: Host, net: NetworkRecord, own: Declarer, attachments: readonly Attachment[]): void;
  /**
   * What an l2 context's attachment owns, on the host side and inside the context's netns (its interface, addresses,
   * routes and neighbours, as its attach made them), and how to make each.
   */
  declareAttachment?(
    host: Host,
    net: NetworkRecord,
    att: Attachment,
    own: Declarer,
    ctx: AttachedContext,
  ): void;
  /** Objects only this driver can see (a bridge's shortcut map), for the reconcile loop to compare. */
  observe?(host: Host, net: NetworkRecord): Present[];
  /** Driver state `network inspect` shows. */
  inspect?(host: Host, net: NetworkRecord): Record<string, unknown>;
  /**
   * Why the policy (issue 19) cannot be enforced on its contexts (they switch frames to each other where no host
   * hook sees them): the compiler refuses a policy that selects one. Absent or undefined: enforced.
   */
  policyUnenforceable?(net: NetworkRecord): string | undefined;
  /**
   * Host devices beyond its contexts' ports that must run the policy program both ways (tcx): a macvlan parent,
   * the only host device its contexts' frames pass.
   */
  policyDevices?(net: NetworkRecord): string[];
  /** Driver-specific checks of a new network; throws invalid(field, ...). Must not touch the kernel. */
  validate(net: NetworkRecord): void;
  /** Make the network's host-side kernel objects, among them its device nc-NET. */
  create(host: Host, net: NetworkRecord): void;
  /** The addresses the network's device nc-NET holds (its gateways), as create adds them and gc restores them. */
  deviceAddresses(net: NetworkRecord): DeviceAddress[];
  /** Remove them; tolerates objects that are already gone. */
  destroy(host: Host, net: NetworkRecord): void;
  /** The address a context gets from a lease, as configured on its interface. */
  contextAddress(lease: Lease): string;
  /** Link an l2 context into the network and configure its side. */
  attach?(host: Host, net: NetworkRecord, ctx: ContextNetns, att: Attachment): void;
  /**
   * Undo attach on the host side; tolerates a missing link. When the context's netns is about to be deleted
   * (linkGoesWithNetns), the veth is left to go with it: the kernel removes both ends in one batch, where deleting
   * the veth first costs a synchronize_net (~16 ms) per context.
   */
  detach?(host: Host, net: NetworkRecord, att: Attachment, linkGoesWithNetns: boolean, netns?: string): void;
}

export type { Attachment, Level };
