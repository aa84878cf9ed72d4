/**
 * overlay: a network that spans hosts (issue 18). Its record lives in etcd and every node mirrors it
 * (engine/overlay.ts); each node hands out addresses only from the address blocks it leased (cluster/blocks.ts).
 * On a node the network is a bridge nc-NET, as for the bridge driver, holding the gateway of each of the node's
 * blocks: l2 contexts hang off it by veths, l3 and socket contexts keep their addresses on it (as on a host
 * network). What crosses hosts, the VXLAN device and one route, neighbour and FDB entry per peer node, is the
 * data path's (ensureOverlayDevice/syncPeers, fed by cluster/peers.ts peersOf); see DATA PATH below.
 */
import { invalid } from "../errors.ts";
import { bridgeIfname } from "../model/names.ts";
import type { NetworkRecord } from "../model/records.ts";
import { bridgeDriver } from "./bridge.ts";
import { segmentPrefix } from "./bridge-segments.ts";
import { familyOf } from "./common.ts";
import { declareNetworkDevice } from "./declarations.ts";
import type { DeviceAddress, NetworkDriver } from "./driver.ts";

/** The block gateways this node holds, each with its block's prefix: the routes to its own contexts. */
function blockAddresses(net: NetworkRecord): DeviceAddress[] {
  return (net.cluster?.blocks ?? []).map((b) => ({
    cidr: `${b.gateway}/${b.cidr.split("/")[1]}`,
    opts: { nodad: familyOf(b.gateway) === 6 },
  }));
}

export const overlayDriver: NetworkDriver = {
  name: "overlay",
  scope: "cluster",
  levels: ["l2", "l3", "socket"],
  options: { block: "the prefix length of the IPv4 address blocks each node leases (--block; default 24)" },
  sharedSegment: true,
  portGuard: "bridge",
  hostDevice: bridgeDriver.hostDevice,
  hostInterfaces(net, att) {
    return att.hostIfname ? bridgeDriver.hostInterfaces(net, att) : [];
  },

  declare(host, net, own, attachments) {
    const bridge = declareNetworkDevice(host, overlayDriver, net, own, () => {
      for (const att of attachments)
        if (att.hostIfname && host.rtnl.linkGet(att.hostIfname))
          host.rtnl.linkSet(att.hostIfname, { master: bridge });
    });
    own.own("link", segmentPrefix(net.name), { prefix: true });
    own.firewallInterface(bridge, net.name);
    // DATA PATH: the VXLAN device (ensureOverlayDevice) is declared here once the data path module is merged.
  },

  declareAttachment(host, net, att, own, ctx) {
    if (att.hostIfname) bridgeDriver.declareAttachment!(host, net, att, own, ctx);
  },

  observe: bridgeDriver.observe!,

  inspect(host, net) {
    return {
      vni: net.cluster?.vni,
      node: net.cluster?.node,
      ...bridgeDriver.inspect!(host, net),
    };
  },

  validate(net) {
    bridgeIfname(net.name);
    if (net.subnets.some((s) => s.gateway !== undefined))
      throw invalid(
        "gateway",
        "an overlay network has a gateway per node (the first address of each of its blocks): --gateway does not apply",
      );
  },

  /** The bridge with this node's block gateways (none until the first block is leased). */
  create(host, net) {
    bridgeDriver.create(host, { ...net, subnets: net.subnets.map((s) => ({ cidr: s.cidr })) });
    try {
      for (const { cidr, opts } of blockAddresses(net)) host.rtnl.addrAdd(bridgeIfname(net.name), cidr, opts);
      // DATA PATH: ensureOverlayDevice(host, local) goes here (and syncPeers when the peers are known).
    } catch (err) {
      bridgeDriver.destroy(host, net);
      throw err;
    }
  },

  deviceAddresses: blockAddresses,

  destroy(host, net) {
    // DATA PATH: the VXLAN device goes here, before the bridge.
    bridgeDriver.destroy(host, net);
  },

  contextAddress(lease) {
    return `${lease.address}/${lease.prefix}`;
  },

  attach: bridgeDriver.attach!,
  detach: bridgeDriver.detach!,
};
