/** Pieces several network drivers share. */

import { NetctxError } from "../errors.ts";
import type { PortKind } from "../firewall/antispoof.ts";
import type { Host } from "../host.ts";
import { KernelError } from "../kernel/errors.ts";
import type { Link, Rtnl } from "../kernel/rtnl.ts";
import { LINK_GROUP } from "../model/names.ts";
import type { NetworkRecord } from "../model/records.ts";
import { parseStoreMark } from "../model/store-mark.ts";
import { linkLocalOf } from "../net/cidr.ts";
import { sleepSync } from "../sleep-sync.ts";
import type { Attachment, ContextNetns, NetworkDriver } from "./driver.ts";

export function familyOf(address: string): 4 | 6 {
  return address.includes(":") ? 6 : 4;
}

export function hostPrefix(address: string): string {
  return `${address.split("/")[0]}/${familyOf(address) === 4 ? 32 : 128}`;
}

/** Run a removal that may find its object already gone (CNI DEL semantics). */
export function tolerateMissing(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    if (err instanceof KernelError && ["ENODEV", "ENOENT", "ESRCH", "EADDRNOTAVAIL"].includes(err.errnoName))
      return;
    throw err;
  }
}

/**
 * Delete a host-side link only if it carries our group and no other store's mark: a failed create must not take a
 * link somebody else made under the name it wanted. (A link without a store's mark was made before stores marked
 * theirs, by this one as far as anyone knows.)
 */
export function deleteOwnLink(host: Host, name: string): void {
  const link = host.rtnl.linkGet(name);
  if (link?.group !== LINK_GROUP) return;
  const mark = parseStoreMark(link.alias);
  if (mark && mark.id !== host.store.id) return;
  tolerateMissing(() => host.rtnl.linkDel(name));
}

/** How a network of this driver guards its contexts' ports (anti-spoofing), unless it was created with --no-antispoof. */
export function guardKindOf(driver: NetworkDriver, net: NetworkRecord): PortKind | undefined {
  return net.options["antispoof"] === false ? undefined : driver.portGuard;
}

/** Firewall view of a network. */
export function firewallNetwork(net: NetworkRecord) {
  return { name: net.name, subnets: net.subnets.map((s) => s.cidr), nat: net.nat, internal: net.internal };
}

export function addNetworkToFirewall(host: Host, net: NetworkRecord): void {
  host.firewall((fw) => fw.addNetwork(firewallNetwork(net)));
}

export function removeNetworkFromFirewall(host: Host, net: NetworkRecord): void {
  host.firewall((fw) => fw.removeNetwork(net.name));
}

/** How a driver configures the context's side of an attachment (its attach and its declarations share it). */
export interface ContextSide {
  gatewayOnLink: boolean;
  defaultRoute: boolean;
  /** The gateway's MAC, for a permanent neighbour entry: a gateway that answers no ARP or ND (routed). */
  gatewayMac?: string;
}

/**
 * The context's side of an attachment: addresses, link up, default routes through the gateways.
 * With gatewayOnLink the gateway is not inside any prefix the context holds (routed networks give /32 and /128
 * addresses), so a host route to the gateway on the interface comes first.
 */
export function configureContextSide(
  host: Host,
  ctx: ContextNetns,
  att: Attachment,
  opts: ContextSide,
): void {
  const { rtnl } = ctx;
  setLinkLocal(
    rtnl,
    att.ifname,
    att.addresses.some((a) => familyOf(a) === 6),
    att.mac,
  );
  for (const cidr of att.addresses) rtnl.addrAdd(att.ifname, cidr, { nodad: familyOf(cidr) === 6 });
  host.pause("create:after-addresses");
  rtnl.linkSet(att.ifname, { up: true });
  for (const gateway of att.gateways) {
    if (opts.gatewayMac)
      rtnl.neighAdd({ ifname: att.ifname, ip: gateway, mac: opts.gatewayMac, state: "permanent" });
    if (opts.gatewayOnLink) rtnl.routeAdd({ dst: hostPrefix(gateway), dev: att.ifname, scope: "link" });
    if (opts.defaultRoute) addDefaultRoute(rtnl, gateway, att.ifname);
  }
}

/**
 * Takes the IPv6 link-local address out of the kernel's hands, on a link that is still down. Left alone, the kernel
 * makes one when the link comes up, holds it tentative for DAD (~1 s) and then sends router solicitations and MLD
 * reports, which flood every port of a bridge (measured at 1000 contexts: 23.5 ms per create with them, 6.2 ms
 * without); it also adds fe80 routes that every later interface walks (fib6_ifup). Without IPv6 the link gets no
 * link-local address at all (Docker disables IPv6 there too); with IPv6 it gets the same EUI-64 address the kernel
 * would make, without DAD (the MAC is ours and unique on the segment). Netlink, not sysctls: a write under
 * /proc/sys/net looks "net" up among the entries of every namespace (proc_sys_compare), O(namespaces) per write.
 */
export function setLinkLocal(rtnl: Rtnl, ifname: string, ipv6: boolean, mac?: string): void {
  try {
    rtnl.linkSet(ifname, { ipv6LinkLocal: false });
  } catch (err) {
    // A kernel without IPv6 (ipv6.disable=1) refuses the AF_INET6 attributes: it makes no link-local address
    // either, so only a network with IPv6 subnets has a problem there.
    if (ipv6 || !(err instanceof KernelError && err.errnoName === "EAFNOSUPPORT")) throw err;
  }
  if (!ipv6) return;
  const address = mac ?? rtnl.linkGet(ifname)?.mac;
  if (!address) throw new NetctxError("internal", `${ifname} has no MAC for its IPv6 link-local address`);
  rtnl.addrAdd(ifname, `${linkLocalOf(address)}/64`, { nodad: true });
}

/**
 * A netns on several networks (or a runtime's netns that already has one) keeps the first default route per family,
 * as the CNI reference plugins do: a second one would fail with EEXIST.
 */
export function addDefaultRoute(rtnl: Rtnl, gateway: string, dev: string): void {
  try {
    rtnl.routeAdd({ dst: "default", family: familyOf(gateway), gateway, dev });
  } catch (err) {
    if (!(err instanceof KernelError && err.errnoName === "EEXIST")) throw err;
  }
}

/** A host-side veth whose peer is created straight inside the context's netns (no move afterwards). */
export function addVethPair(
  host: Host,
  netnsPath: string,
  att: Attachment,
  master?: string,
  up = true,
  hostMac?: string,
): void {
  // An rm deletes only the context's netns and the kernel removes the veth with it, a moment later: a context
  // re-created at once under the same name may find that leftover, which carries our mark and no owner.
  try {
    retryOnLeftover(host, att.hostIfname, netnsPath, () =>
      linkAddVeth(host, netnsPath, att, master, up, hostMac),
    );
  } catch (err) {
    // A Linux bridge numbers its ports in 10 bits (BR_MAX_PORTS): the 1024th port is refused with EXFULL.
    if (master && err instanceof KernelError && err.errnoName === "EXFULL")
      throw new NetctxError(
        "exhausted",
        `network "${att.network}": its bridge ${master} has the most ports a Linux bridge can hold (1023)`,
      );
    throw err;
  }
  host.pause("create:after-veth");
}

function retryOnLeftover(host: Host, name: string, netnsPath: string, add: () => void): void {
  for (let attempt = 0; ; attempt++) {
    try {
      add();
      return;
    } catch (err) {
      if (!(err instanceof KernelError && err.errnoName === "EEXIST") || attempt >= 50) throw err;
      const holder = host.rtnl.linkGet(name);
      // No host link of that name: the leftover vanished since the EEXIST (the kernel's netns cleanup runs
      // meanwhile), so try again; or the name taken is the peer's, inside the netns, which is the caller's error.
      if (holder === undefined) {
        if (attempt >= 2) throw err;
        continue;
      }
      if (!isOwnLeftover(host, holder, netnsPath)) throw err;
      deleteOwnLink(host, name);
      sleepSync(2);
    }
  }
}

/**
 * A link in the way of a new veth is a leftover to delete only when this store made it (its mark) and no record
 * but the one attaching (the context in `netnsPath`) names it: anything else is somebody's live link.
 */
function isOwnLeftover(host: Host, link: Link, netnsPath: string): boolean {
  if (link.group !== LINK_GROUP || parseStoreMark(link.alias)?.id !== host.store.id) return false;
  return host.store
    .hostIfnameHolders(link.name)
    .every((holder) => host.store.getContext(holder)?.spec.netns === netnsPath);
}

function linkAddVeth(
  host: Host,
  netnsPath: string,
  att: Attachment,
  master: string | undefined,
  up: boolean,
  hostMac: string | undefined,
): void {
  host.rtnl.linkAdd({
    name: att.hostIfname,
    kind: "veth",
    mtu: att.mtu,
    ...(hostMac ? { mac: hostMac } : {}),
    up: up && !master,
    ...host.linkMark,
    ...(master ? { master } : {}),
    peer: { name: att.ifname, netns: netnsPath, mtu: att.mtu, ...(att.mac ? { mac: att.mac } : {}) },
  });
  if (!master) return;
  // A bridge port holds no addresses (the bridge does).
  setLinkLocal(host.rtnl, att.hostIfname, false);
  if (up) host.rtnl.linkSet(att.hostIfname, { up: true });
}
