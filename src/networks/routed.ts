/**
 * routed: no bridge and no L2 adjacency between contexts (OpenVZ venet, Calico, CNI ptp). Each context holds
 * /32 and /128 addresses; its host-side veth holds the gateway addresses and a host route to each of them,
 * so every packet between contexts crosses the host's routing code (and its firewall).
 */
import { pausePoint } from "../engine/pause.ts";
import { guardAttachment, unguardAttachment } from "../firewall/antispoof.ts";
import { registerInterface, unregisterInterface } from "../firewall/interface-queue.ts";
import type { Lease } from "../state/store.ts";
import {
  addNetworkToFirewall,
  addVethPair,
  configureContextSide,
  deleteOwnLink,
  familyOf,
  firewallNetwork,
  hostPrefix,
  removeNetworkFromFirewall,
  setLinkLocal,
} from "./common.ts";
import type { NetworkDriver } from "./driver.ts";

export const routedDriver: NetworkDriver = {
  name: "routed",
  levels: ["l2"],

  validate() {},

  create(host, net) {
    addNetworkToFirewall(host, net);
  },

  destroy(host, net) {
    removeNetworkFromFirewall(host, net);
  },

  contextAddress(lease: Lease) {
    return hostPrefix(lease.address);
  },

  attach(host, net, ctx, att) {
    addVethPair(host, ctx.path, att, undefined, false);
    // The host resolves a context's IPv6 address from its host-side veth, and Linux sources that neighbour
    // solicitation from the link-local address: it must not sit tentative in DAD (~1 s).
    setLinkLocal(
      host.rtnl,
      att.hostIfname,
      att.addresses.some((a) => familyOf(a) === 6),
    );
    guardAttachment(host, net, ctx.rtnl, att);
    host.rtnl.linkSet(att.hostIfname, { up: true });
    registerInterface(host, firewallNetwork(net), att.hostIfname);
    pausePoint("create:after-nft");
    // The same gateway address on every host-side veth answers each context's ARP/ND for its gateway
    // (the CNI ptp plugin does the same); as a /32 and /128 it adds no subnet route.
    for (const gateway of att.gateways)
      host.rtnl.addrAdd(att.hostIfname, hostPrefix(gateway), {
        nodad: familyOf(gateway) === 6,
        noprefixroute: true,
      });
    for (const address of att.addresses)
      host.rtnl.routeAdd({ dst: hostPrefix(address), dev: att.hostIfname, scope: "link" });
    pausePoint("create:after-routes");
    configureContextSide(ctx, att, { gatewayOnLink: true, defaultRoute: !net.internal });
  },

  detach(host, net, att, linkGoesWithNetns) {
    unregisterInterface(host, firewallNetwork(net), att.hostIfname);
    unguardAttachment(host, net, att);
    pausePoint("rm:after-nft");
    // Deleting the veth (here or with the netns) takes its addresses and routes with it.
    if (!linkGoesWithNetns) deleteOwnLink(host, att.hostIfname);
  },
};
