/**
 * bridge: a Linux bridge holding the gateway addresses; each l2 context hangs off it by a veth (podman, CNI bridge).
 */
import type { Host } from "../host.ts";
import { bridgeIfname, LINK_GROUP } from "../model/names.ts";
import type { Lease, NetworkRecord } from "../state/store.ts";
import { addVethPair, configureContextSide, deleteOwnLink, familyOf, firewallNetwork } from "./common.ts";
import type { Attachment, ContextNetns, NetworkDriver } from "./driver.ts";

export const bridgeDriver: NetworkDriver = {
  name: "bridge",
  levels: ["l2"],

  validate(net) {
    bridgeIfname(net.name);
  },

  create(host, net) {
    const bridge = bridgeIfname(net.name);
    host.rtnl.linkAdd({ name: bridge, kind: "bridge", mtu: net.mtu, up: true, group: LINK_GROUP });
    try {
      for (const subnet of net.subnets) {
        const prefix = subnet.cidr.split("/")[1];
        if (subnet.gateway)
          host.rtnl.addrAdd(bridge, `${subnet.gateway}/${prefix}`, { nodad: familyOf(subnet.cidr) === 6 });
      }
      host.firewall((fw) => {
        fw.addNetwork(firewallNetwork(net));
        fw.addInterface(net.name, bridge);
      });
    } catch (err) {
      bridgeDriver.destroy(host, net);
      throw err;
    }
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
    deleteOwnLink(host, bridge);
  },

  contextAddress(lease: Lease) {
    return `${lease.address}/${lease.prefix}`;
  },

  attach(host: Host, net: NetworkRecord, ctx: ContextNetns, att: Attachment) {
    addVethPair(host, ctx.path, att, bridgeIfname(net.name));
    configureContextSide(ctx.rtnl, att, { gatewayOnLink: false, defaultRoute: !net.internal });
  },

  detach(host, _net, att, linkGoesWithNetns) {
    if (!linkGoesWithNetns) deleteOwnLink(host, att.hostIfname);
  },
};
