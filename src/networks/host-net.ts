/**
 * host: a pool of addresses that live on a host device netctx owns, for the shared-stack levels (l3, socket).
 * This kernel has no `dummy` link kind; a bridge without ports serves the same purpose. Unlike a dummy it can lose
 * its carrier (once a port has come and gone, e.g. an upstream router's veth): its routes then show "linkdown" but
 * stay in use (net.ipv4.conf.*.ignore_routes_with_linkdown is 0 by default), and local delivery is unaffected.
 * Ports are allowed: routers for l3 contexts' routes can hang off the bridge (the tests and the demo do that).
 */
import type { Host } from "../host.ts";
import { bridgeIfname } from "../model/names.ts";
import type { Lease } from "../model/records.ts";
import { bridgeDriver } from "./bridge.ts";
import { familyOf } from "./common.ts";
import { declareNetworkDevice } from "./declarations.ts";
import type { NetworkDriver } from "./driver.ts";

export const hostDriver: NetworkDriver = {
  name: "host",
  levels: ["l3", "socket"],
  options: {},
  sharedSegment: true,
  hostDevice(net) {
    return hostDevice(net.name);
  },
  hostInterfaces() {
    return [];
  },
  declare(host, net, own) {
    own.firewallInterface(declareNetworkDevice(host, hostDriver, net, own), net.name);
  },
  validate: bridgeDriver.validate,
  create: bridgeDriver.create,
  deviceAddresses: bridgeDriver.deviceAddresses,
  destroy: bridgeDriver.destroy,
  contextAddress(lease: Lease) {
    return `${lease.address}/${lease.prefix}`;
  },
};

/** The host device of a host network: where its contexts' addresses live. */
export const hostDevice = bridgeIfname;

/** The subnet route already exists through the gateway address, so the context's addresses add none. */
export function addHostAddresses(host: Host, device: string, addresses: string[]): void {
  for (const cidr of addresses)
    host.rtnl.addrAdd(device, cidr, { nodad: familyOf(cidr) === 6, noprefixroute: true });
}
