/**
 * One interface for every network driver (netavark's NetworkDriver): adding a driver never touches the others.
 */
import type { Host } from "../host.ts";
import type { AddrOpts, Rtnl } from "../kernel/rtnl.ts";
import type { Attachment } from "../model/attachment.ts";
import type { Lease, Level, NetworkRecord } from "../state/store.ts";

/** The context side of an attachment: its netns and a netlink socket bound inside it. */
export interface ContextNetns {
  path: string;
  rtnl: Rtnl;
}

export interface DeviceAddress {
  cidr: string;
  opts: AddrOpts;
}

export interface NetworkDriver {
  readonly name: string;
  /** Levels whose contexts may join networks of this driver. */
  readonly levels: readonly Level[];
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
  detach?(host: Host, net: NetworkRecord, att: Attachment, linkGoesWithNetns: boolean): void;
}

export type { Attachment, Level };
