/**
 * bridge: a Linux bridge holding the gateway addresses; each l2 context hangs off it by a veth (podman, CNI bridge).
 */

import { guardAttachment, unguardAttachment } from "../firewall/antispoof.ts";
import type { Host } from "../host.ts";
import { bridgeIfname } from "../model/names.ts";
import type { Lease, NetworkRecord } from "../model/records.ts";
import { stableMac } from "../net/cidr.ts";
import { portBridge, removeSegments, segmentPrefix } from "./bridge-segments.ts";
import {
  addShortcut,
  dropShortcutMac,
  forgetShortcut,
  removeShortcut,
  type ShortcutRoute,
  shortcutMacs,
  shortcutStatus,
} from "./bridge-shortcut.ts";
import {
  addVethPair,
  type ContextSide,
  configureContextSide,
  deleteOwnLink,
  familyOf,
  firewallNetwork,
  guardKindOf,
} from "./common.ts";
import { distrustRouters } from "./context-sysctls.ts";
import { declareContextSide, declareGuard, declareHostLink, declareNetworkDevice } from "./declarations.ts";
import type { AttachedContext, Attachment, ContextNetns, NetworkDriver } from "./driver.ts";
import type { Declarer } from "./ownership.ts";
import { joinPortBlocks, rejoinPortBlocks } from "./port-blocks.ts";

/** Locally administered unicast (02:...), stable for a network name. */
export function bridgeMac(network: string): string {
  return stableMac(`netctx-bridge:${network}`);
}

/** A shortcut map entry (bridge-shortcut.ts): one per unshaped context on the network, by its MAC. */
function shortcutId(network: string, mac: string): string {
  return `${network} ${mac.toLowerCase()}`;
}

/** The context's side: the gateway is on the context's prefix and answers ARP and ND itself. */
function contextSide(net: NetworkRecord): ContextSide {
  return { gatewayOnLink: false, defaultRoute: !net.internal };
}

/**
 * What a context's port on a bridge owns: its veth (made again by `driver`'s attach: the overlay attaches as a
 * bridge does, with more of its own), its guard, its shortcut entry and the context's side.
 */
export function declareBridgePort(
  driver: NetworkDriver,
  host: Host,
  net: NetworkRecord,
  att: Attachment,
  own: Declarer,
  ctx: AttachedContext,
): void {
  declareHostLink(host, driver, net, att, own, ctx);
  declareGuard(bridgeDriver, net, att, own, ctx.netns);
  // The attachment that carries bandwidth limits takes the bridge: its frames must pass the limits.
  if (att.mac && att.hostIfname !== ctx.shapedIfname) own.own("shortcut", shortcutId(net.name, att.mac));
  declareContextSide(own, att, ctx, contextSide(net));
}

export const bridgeDriver: NetworkDriver = {
  name: "bridge",
  levels: ["l2"],
  options: {},
  sharedSegment: true,
  portGuard: "bridge",

  hostDevice(net) {
    return bridgeIfname(net.name);
  },

  hostInterfaces(net, att) {
    return [bridgeIfname(net.name), att.hostIfname];
  },

  /** The bridge, its addresses and its segments (bridge-segments.ts), which go with the network. */
  declare(host, net, own, attachments) {
    const bridge = declareNetworkDevice(host, bridgeDriver, net, own, () => {
      rejoinPortBlocks(host, net.name, bridge, attachments);
      for (const att of attachments)
        if (att.hostIfname && host.rtnl.linkGet(att.hostIfname))
          host.rtnl.linkSet(att.hostIfname, { master: bridge });
    });
    own.own("link", segmentPrefix(net.name), { prefix: true });
    own.firewallInterface(bridge, net.name);
  },

  declareAttachment(host, net, att, own, ctx) {
    declareBridgePort(bridgeDriver, host, net, att, own, ctx);
  },

  observe(host, net) {
    return (shortcutMacs(host, net.name) ?? []).map((mac) => ({
      kind: "shortcut" as const,
      id: shortcutId(net.name, mac),
      object: `shortcut entry ${mac} of network ${net.name}`,
      unowned: "no unshaped context on it has that MAC",
      remove: () => dropShortcutMac(host, net.name, mac),
    }));
  },

  inspect(host, net) {
    return { shortcut: shortcutStatus(host, net.name) };
  },

  validate(net) {
    bridgeIfname(net.name);
  },

  create(host, net) {
    const bridge = bridgeIfname(net.name);
    // A bridge without a MAC of its own takes the lowest MAC of its ports and changes it as contexts come and
    // go: contexts that cached the gateway's old MAC then send to a port's MAC, which the bridge drops as
    // PACKET_OTHERHOST (seen in the crash campaign). A fixed MAC derived from the name also survives gc's recreate.
    host.rtnl.linkAdd({
      name: bridge,
      kind: "bridge",
      mtu: net.mtu,
      up: true,
      ...host.linkMark,
      mac: bridgeMac(net.name),
      bridge: { multicastSnooping: false },
    });
    host.pause("network-create:after-link");
    try {
      for (const { cidr, opts } of bridgeDriver.deviceAddresses(net)) host.rtnl.addrAdd(bridge, cidr, opts);
      host.pause("network-create:after-addresses");
      host.firewall((fw) => {
        fw.addNetwork(firewallNetwork(net));
        fw.addInterface(net.name, bridge);
      });
      host.pause("network-create:after-firewall");
    } catch (err) {
      bridgeDriver.destroy(host, net);
      throw err;
    }
  },

  /** The gateways with the subnet's prefix: the bridge's subnet route is how the host reaches the contexts. */
  deviceAddresses(net) {
    return net.subnets.flatMap((s) =>
      s.gateway
        ? [{ cidr: `${s.gateway}/${s.cidr.split("/")[1]}`, opts: { nodad: familyOf(s.cidr) === 6 } }]
        : [],
    );
  },

  destroy(host, net) {
    const bridge = bridgeIfname(net.name);
    host.firewall((fw) => {
      fw.removeInterface(net.name, bridge);
      fw.removeNetwork(net.name);
    });
    host.pause("network-rm:after-nft");
    removeSegments(host, net.name);
    deleteOwnLink(host, bridge);
    forgetShortcut(host, net.name);
  },

  contextAddress(lease: Lease) {
    return `${lease.address}/${lease.prefix}`;
  },

  attach(host: Host, net: NetworkRecord, ctx: ContextNetns, att: Attachment) {
    attachBridgePort(host, net, ctx, att);
  },

  detach(host, net, att, linkGoesWithNetns) {
    removeShortcut(host, att);
    unguardAttachment(host, guardKindOf(bridgeDriver, net), att);
    if (!linkGoesWithNetns) deleteOwnLink(host, att.hostIfname);
  },
};

/**
 * A context's port on the network's bridge. `route`: an overlay network's, for its shortcut to route onward and
 * inbound (bridge-shortcut.ts, shortcut-routing.ts).
 */
export function attachBridgePort(
  host: Host,
  net: NetworkRecord,
  ctx: ContextNetns,
  att: Attachment,
  route?: ShortcutRoute,
): void {
  // Before the context's interface exists: it copies the netns's conf/default when it is made.
  distrustRouters(ctx);
  addVethPair(host, ctx.path, att, portBridge(host, net), false);
  // While the port is down: a qdisc added to a device that is up waits for the device to quiesce. The policy's
  // filter comes first in the blocks: a frame the policies deny never reaches the shortcut's redirect.
  joinPortBlocks(host, att.hostIfname, bridgeIfname(net.name));
  addShortcut(host, att, route);
  host.rtnl.linkSet(att.hostIfname, { up: true });
  guardAttachment(host, guardKindOf(bridgeDriver, net), ctx.rtnl, att);
  configureContextSide(host, ctx, att, contextSide(net));
}
