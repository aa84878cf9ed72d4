/**
 * overlay: a network that spans hosts (issue 18). Its record lives in etcd and every node mirrors it
 * (engine/overlay.ts); each node hands out addresses only from the address blocks it leased (cluster/blocks.ts).
 * On a node the network is a bridge nc-NET, as for the bridge driver, holding the gateway of each of the node's
 * blocks: l2 contexts hang off it by veths, l3 and socket contexts keep their addresses on it (as on a host
 * network). What crosses hosts is the VXLAN device nv-NET (made and declared here, from the record alone, so gc in
 * any process keeps it) and one route, neighbour and FDB entry per peer node, which the engine programs from etcd
 * (engine/overlay.ts: peersOf, then syncPeers). The bridge's MTU is the VXLAN device's, so a context's frame always
 * fits the encapsulation.
 */
import { type OverlayLocal, vtepMacOf } from "../cluster/peers.ts";
import { invalid } from "../errors.ts";
import { bridgeIfname } from "../model/names.ts";
import type { NetworkRecord } from "../model/records.ts";
import { attachBridgePort, bridgeDriver, declareBridgePort } from "./bridge.ts";
import { segmentPrefix } from "./bridge-segments.ts";
import { dropInbound, type ShortcutRoute } from "./bridge-shortcut.ts";
import { familyOf } from "./common.ts";
import { declareNetworkDevice } from "./declarations.ts";
import type { DeviceAddress, NetworkDriver } from "./driver.ts";
import { ensureOverlayDevice, overlayIfname, removeOverlayDevice, vtepAddresses } from "./overlay-peers.ts";
import { addressId } from "./ownership.ts";
import { rejoinPortBlocks } from "./port-blocks.ts";

/** `--direct-routing` (-o direct-routing=true): peers on this host's underlay segment are routed without VXLAN. */
export const DIRECT_ROUTING = "direct-routing";

export function directRouting(net: NetworkRecord): boolean {
  const v = net.options[DIRECT_ROUTING];
  return v === true || v === "true";
}

/**
 * This node's side of the network for the data path, from the record alone; undefined while the engine has not
 * told the record its underlay (then there is no VXLAN device). The device's MTU is the network's (the mirror set
 * it to the underlay's less the encapsulation unless --mtu), the same as the bridge's.
 */
export function overlayLocal(net: NetworkRecord): OverlayLocal | undefined {
  const c = net.cluster;
  if (c?.underlay === undefined || c.underlayDev === undefined) return undefined;
  return {
    network: net.name,
    vni: c.vni,
    underlay: c.underlay,
    underlayDev: c.underlayDev,
    mtu: net.mtu,
    mac: vtepMacOf(c.node),
    blocks: c.blocks.map((b) => b.cidr),
    subnets: net.subnets.map((s) => s.cidr),
  };
}

/**
 * What the bridge shortcut routes past the host (shortcut-routing.ts): the network's subnets, and its VXLAN device
 * (with --direct-routing also the underlay device) for the inbound program. An --internal network routes nothing
 * past the host: its paths keep the firewall's checks (the internal sets and overlay-direct.ts's), so it gets an
 * empty route, which clears any entries. Undefined (no underlay known yet, so no VXLAN device): left as it is.
 */
function shortcutRoute(net: NetworkRecord): ShortcutRoute | undefined {
  if (net.internal) return { subnets: [], inbound: [] };
  const local = overlayLocal(net);
  if (!local) return undefined;
  return {
    subnets: net.subnets.map((s) => s.cidr),
    inbound: [overlayIfname(net.name), ...(directRouting(net) ? [local.underlayDev] : [])],
  };
}

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
  options: {
    block: "the prefix length of the IPv4 address blocks each node leases (--block; default 24)",
    [DIRECT_ROUTING]: "route to peers on this host's underlay segment without VXLAN (--direct-routing)",
  },
  sharedSegment: true,
  portGuard: "bridge",
  hostDevice: bridgeDriver.hostDevice,
  hostInterfaces(net, att) {
    return att.hostIfname ? bridgeDriver.hostInterfaces(net, att) : [];
  },

  declare(host, net, own, attachments) {
    const bridge = declareNetworkDevice(host, overlayDriver, net, own, () => {
      rejoinPortBlocks(host, net.name, bridge, attachments, shortcutRoute(net));
      for (const att of attachments)
        if (att.hostIfname && host.rtnl.linkGet(att.hostIfname))
          host.rtnl.linkSet(att.hostIfname, { master: bridge });
    });
    own.own("link", segmentPrefix(net.name), { prefix: true });
    own.firewallInterface(bridge, net.name);
    const local = overlayLocal(net);
    if (!local) return;
    const vxlan = overlayIfname(net.name);
    // Made again from the record; its peer entries come back with the engine's next pass (syncPeers sees a new ifindex).
    own.own("link", vxlan, {
      make: {
        action: "recreate",
        object: `overlay device ${vxlan}`,
        reason: `network ${net.name} crosses hosts through it`,
        run: () => ensureOverlayDevice(host, local),
      },
    });
    for (const cidr of vtepAddresses(local.blocks))
      own.own("address", addressId(cidr, vxlan), {
        on: vxlan,
        make: {
          action: "add",
          object: `address ${cidr} dev ${vxlan}`,
          reason: "peers route this node's block through it",
          run: () => host.rtnl.addrAdd(vxlan, cidr, { nodad: familyOf(cidr) === 6 }),
        },
      });
    // Cross-host traffic is the network's own: an internal network lets it through nv-NET as it does the bridge.
    own.firewallInterface(vxlan, net.name);
  },

  declareAttachment(host, net, att, own, ctx) {
    if (att.hostIfname) declareBridgePort(overlayDriver, host, net, att, own, ctx);
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
    // --internal with --direct-routing: direct traffic leaves through the underlay device, which is no interface of
    // the network; the firewall lets through exactly the paths to and from the peers' blocks
    // (firewall/overlay-direct-objects.ts), which the engine keeps in step with etcd.
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
      const local = overlayLocal(net);
      if (local) {
        const { ifname } = ensureOverlayDevice(host, local);
        host.firewall((fw) => fw.addInterface(net.name, ifname));
      }
    } catch (err) {
      bridgeDriver.destroy(host, net);
      throw err;
    }
  },

  deviceAddresses: blockAddresses,

  destroy(host, net) {
    const local = overlayLocal(net);
    if (local) {
      // Before the bridge goes (the shortcut's map is found through it): the underlay device outlives the network.
      dropInbound(host, net.name, [local.underlayDev]);
      host.firewall((fw) => fw.removeInterface(net.name, overlayIfname(net.name)));
      removeOverlayDevice(host, local);
    }
    bridgeDriver.destroy(host, net);
  },

  contextAddress(lease) {
    return `${lease.address}/${lease.prefix}`;
  },

  /**
   * As on a bridge; the context's address has its block's prefix, so without a default route (--internal) the rest
   * of the overlay, the other nodes' blocks, needs a route of its own: the overlay's subnets via the block gateway.
   */
  attach(host, net, ctx, att) {
    attachBridgePort(host, net, ctx, att, shortcutRoute(net));
    if (!net.internal) return;
    for (const s of net.subnets) {
      const gateway = att.gateways.find((g) => familyOf(g) === familyOf(s.cidr));
      if (gateway) ctx.rtnl.routeAdd({ dst: s.cidr, gateway, dev: att.ifname });
    }
  },
  detach: bridgeDriver.detach!,
};
