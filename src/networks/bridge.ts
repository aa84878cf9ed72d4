/**
 * bridge: a Linux bridge holding the gateway addresses; each l2 context hangs off it by a veth (podman, CNI bridge).
 */

import { guardAttachment, unguardAttachment } from "../firewall/antispoof.ts";
import type { Host } from "../host.ts";
import { bridgeIfname, LINK_GROUP } from "../model/names.ts";
import { stableMac } from "../net/cidr.ts";
import { pausePoint } from "../pause.ts";
import type { Lease, NetworkRecord } from "../state/store.ts";
import { portBridge, removeSegments } from "./bridge-segments.ts";
import { addShortcut, forgetShortcut, removeShortcut } from "./bridge-shortcut.ts";
import { addVethPair, configureContextSide, deleteOwnLink, familyOf, firewallNetwork } from "./common.ts";
import { distrustRouters } from "./context-sysctls.ts";
import type { Attachment, ContextNetns, NetworkDriver } from "./driver.ts";

/** Locally administered unicast (02:...), stable for a network name. */
export function bridgeMac(network: string): string {
  return stableMac(`netctx-bridge:${network}`);
}

export const bridgeDriver: NetworkDriver = {
  name: "bridge",
  levels: ["l2"],

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
      group: LINK_GROUP,
      mac: bridgeMac(net.name),
      bridge: { multicastSnooping: false },
    });
    pausePoint("network-create:after-link");
    try {
      for (const { cidr, opts } of bridgeDriver.deviceAddresses(net)) host.rtnl.addrAdd(bridge, cidr, opts);
      pausePoint("network-create:after-addresses");
      host.firewall((fw) => {
        fw.addNetwork(firewallNetwork(net));
        fw.addInterface(net.name, bridge);
      });
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
      fw.removeNetwork(
        net.name,
        net.subnets.map((s) => s.cidr),
      );
    });
    pausePoint("network-rm:after-nft");
    removeSegments(host, net.name);
    deleteOwnLink(host, bridge);
    forgetShortcut(host, net.name);
  },

  contextAddress(lease: Lease) {
    return `${lease.address}/${lease.prefix}`;
  },

  attach(host: Host, net: NetworkRecord, ctx: ContextNetns, att: Attachment) {
    // Before the context's interface exists: it copies the netns's conf/default when it is made.
    distrustRouters(ctx);
    addVethPair(host, ctx.path, att, portBridge(host, net), false);
    // While the port is down: a qdisc added to a device that is up waits for the device to quiesce.
    addShortcut(host, att);
    host.rtnl.linkSet(att.hostIfname, { up: true });
    guardAttachment(host, net, ctx.rtnl, att);
    configureContextSide(ctx, att, { gatewayOnLink: false, defaultRoute: !net.internal });
  },

  detach(host, net, att, linkGoesWithNetns) {
    removeShortcut(host, att);
    unguardAttachment(host, net, att);
    if (!linkGoesWithNetns) deleteOwnLink(host, att.hostIfname);
  },
};
