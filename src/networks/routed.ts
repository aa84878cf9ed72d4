/**
 * routed: no bridge and no L2 adjacency between contexts (OpenVZ venet, Calico, CNI ptp). Each context holds
 * /32 and /128 addresses and reaches everything through its gateway, so every packet between contexts crosses
 * the host's routing code (and its firewall).
 *
 * The gateway addresses live once per network, as /32 and /128 on a device of their own without ports (nc-NET,
 * a bridge, as for host networks: this kernel has no dummy), not on every host-side veth as the CNI ptp plugin
 * puts them. The same address on N devices makes N local routes for one prefix, and the kernel walks that list on
 * each add and delete (+0.34 ms per context at N=1000). A context finds its gateway's MAC in a permanent
 * neighbour entry instead of asking for it: the host would answer an ARP request for an address on another device
 * only while arp_ignore is 0, and Neighbour Discovery never does.
 */

import { guardAttachment, unguardAttachment } from "../firewall/antispoof.ts";
import { registerInterface, unregisterInterface } from "../firewall/interface-queue.ts";
import type { RouteSpec } from "../kernel/route.ts";
import { bridgeIfname } from "../model/names.ts";
import type { Lease, NetworkRecord } from "../model/records.ts";
import { stableMac } from "../net/cidr.ts";
import {
  addNetworkToFirewall,
  addVethPair,
  type ContextSide,
  configureContextSide,
  deleteOwnLink,
  familyOf,
  firewallNetwork,
  guardKindOf,
  hostPrefix,
  removeNetworkFromFirewall,
  setLinkLocal,
} from "./common.ts";
import { declareContextSide, declareGuard, declareHostLink, declareNetworkDevice } from "./declarations.ts";
import type { Attachment, NetworkDriver } from "./driver.ts";
import { mainRouteId } from "./ownership.ts";
import { joinPortBlocks } from "./port-blocks.ts";

/** The device holding a routed network's gateway addresses. */
const gatewayDevice = bridgeIfname;

/**
 * Fixed for a host-side veth name, so the contexts' neighbour entries stay right when gc makes a veth again. It
 * only has to be unique on its point-to-point link.
 */
export function routedPortMac(hostIfname: string): string {
  return stableMac(`netctx-routed-port:${hostIfname}`);
}

/**
 * The host's routes to a context, sourced from the gateway: what the host itself sends a context (and the ARP
 * request before it) comes from the address the context knows, not from whichever address the kernel would pick
 * on another device. The kernel drops an IPv4 route with its source address (gc puts them back).
 */
export function contextRoutes(att: Attachment): RouteSpec[] {
  return att.addresses.map((address) => {
    const gateway = att.gateways.find((g) => familyOf(g) === familyOf(address));
    return {
      dst: hostPrefix(address),
      dev: att.hostIfname,
      scope: "link" as const,
      ...(gateway ? { src: gateway } : {}),
    };
  });
}

/**
 * The context's side: its gateway is off its /32 and /128 prefixes (a host route on the link first) and answers no
 * ARP or ND (a permanent neighbour entry with the host port's fixed MAC).
 */
function contextSide(net: NetworkRecord, att: Attachment): ContextSide {
  return { gatewayOnLink: true, defaultRoute: !net.internal, gatewayMac: routedPortMac(att.hostIfname) };
}

export const routedDriver: NetworkDriver = {
  name: "routed",
  levels: ["l2"],
  options: {},
  sharedSegment: false,
  portGuard: "routed",

  hostDevice(_net, att) {
    return att.hostIfname;
  },

  hostInterfaces(_net, att) {
    return [att.hostIfname];
  },

  declare(host, net, own) {
    declareNetworkDevice(host, routedDriver, net, own);
  },

  /** The veth, its guard, its firewall registration and the host's routes to the context through it. */
  declareAttachment(host, net, att, own, ctx) {
    declareHostLink(host, routedDriver, net, att, own, ctx);
    declareGuard(routedDriver, net, att, own, ctx.netns);
    own.firewallInterface(att.hostIfname, net.name);
    for (const route of contextRoutes(att))
      own.own("route", mainRouteId(route.dst, route.dev!), {
        on: route.dev!,
        make: {
          action: "add",
          object: `route ${route.dst} dev ${route.dev}`,
          reason: `${own.owner} is reached by it`,
          run: () => host.rtnl.routeAdd(route),
        },
      });
    declareContextSide(own, att, ctx, contextSide(net, att));
  },

  validate(net) {
    gatewayDevice(net.name);
  },

  create(host, net) {
    const device = gatewayDevice(net.name);
    host.rtnl.linkAdd({ name: device, kind: "bridge", mtu: net.mtu, ...host.linkMark });
    try {
      setLinkLocal(host.rtnl, device, false);
      host.rtnl.linkSet(device, { up: true });
      host.pause("network-create:after-link");
      for (const { cidr, opts } of routedDriver.deviceAddresses(net)) host.rtnl.addrAdd(device, cidr, opts);
      host.pause("network-create:after-addresses");
      addNetworkToFirewall(host, net);
      host.pause("network-create:after-firewall");
    } catch (err) {
      routedDriver.destroy(host, net);
      throw err;
    }
  },

  /** The bare gateway addresses, no subnet route: each context has a host route of its own. */
  deviceAddresses(net) {
    return net.subnets.flatMap((s) =>
      s.gateway
        ? [{ cidr: hostPrefix(s.gateway), opts: { nodad: familyOf(s.gateway) === 6, noprefixroute: true } }]
        : [],
    );
  },

  destroy(host, net) {
    removeNetworkFromFirewall(host, net);
    host.pause("network-rm:after-nft");
    deleteOwnLink(host, gatewayDevice(net.name));
  },

  contextAddress(lease: Lease) {
    return hostPrefix(lease.address);
  },

  attach(host, net, ctx, att) {
    const portMac = routedPortMac(att.hostIfname);
    addVethPair(host, ctx.path, att, undefined, false, portMac);
    // The host resolves a context's IPv6 address from its host-side veth, and Linux sources that neighbour
    // solicitation from the link-local address: it must not sit tentative in DAD (~1 s).
    setLinkLocal(
      host.rtnl,
      att.hostIfname,
      att.addresses.some((a) => familyOf(a) === 6),
      portMac,
    );
    guardAttachment(host, guardKindOf(routedDriver, net), ctx.rtnl, att);
    // The network's blocks hold the policy's filters (port-blocks.ts); no shortcut here.
    joinPortBlocks(host, att.hostIfname, gatewayDevice(net.name));
    host.rtnl.linkSet(att.hostIfname, { up: true });
    registerInterface(host, firewallNetwork(net), att.hostIfname);
    host.pause("create:after-nft");
    for (const route of contextRoutes(att)) host.rtnl.routeAdd(route);
    host.pause("create:after-routes");
    configureContextSide(host, ctx, att, contextSide(net, att));
  },

  detach(host, net, att, linkGoesWithNetns) {
    unregisterInterface(host, firewallNetwork(net), att.hostIfname);
    unguardAttachment(host, guardKindOf(routedDriver, net), att);
    host.pause("rm:after-nft");
    // Deleting the veth (here or with the netns) takes its routes with it.
    if (!linkGoesWithNetns) deleteOwnLink(host, att.hostIfname);
  },
};
