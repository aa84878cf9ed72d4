/**
 * One rtnetlink socket bound to one network namespace (Go netlink's Handle): every call is a synchronous
 * request/ack exchange, so callers may use it inside setns windows and keep it open for a resident engine.
 */

import { type Addr, type AddrOpts, addrAdd, addrDel, addrList } from "./addr.ts";
import { KernelError } from "./errors.ts";
import {
  type Link,
  type LinkAddSpec,
  type LinkChange,
  linkAdd,
  linkDel,
  linkDelGroup,
  linkGet,
  linkIndex,
  linkList,
  linkNames,
  linkPortCount,
  linkSet,
} from "./link.ts";
import {
  type FdbEntry,
  type FdbSpec,
  fdbChange,
  fdbList,
  type Neigh,
  type NeighSpec,
  neighAdd,
  neighDel,
  neighList,
  neighReplace,
} from "./neigh.ts";
import { NetlinkSocket } from "./netlink.ts";
import { inNetns } from "./netns.ts";
import { netnsIdEnsure, nsidOf } from "./nsid.ts";
import {
  type Route,
  type RouteSpec,
  RT_TABLE_MAIN,
  routeChange,
  routeGet,
  routeList,
  tableHasRoutes,
} from "./route.ts";
import { type Rule, type RuleSpec, ruleAdd, ruleDel, ruleList, ruleTables } from "./rule.ts";
import {
  type BlockFilter,
  blockFilterDel,
  blockFilters,
  blockProgramAdd,
  deviceBlocks,
  ingressQdiscDel,
  type JoinedBlocks,
  joinedBlocks,
  type PortBlocks,
  portBlocksJoin,
} from "./tc.ts";

export type {
  Addr,
  AddrOpts,
  FdbEntry,
  FdbSpec,
  Link,
  LinkAddSpec,
  LinkChange,
  Neigh,
  NeighSpec,
  Route,
  RouteSpec,
  Rule,
  RuleSpec,
};

export class Rtnl {
  private constructor(private readonly sock: NetlinkSocket) {}

  /** A socket inside the netns at netnsPath (opened in a setns window), or in the current one. */
  static open(netnsPath?: string): Rtnl {
    const sock =
      netnsPath === undefined ? NetlinkSocket.open() : inNetns(netnsPath, () => NetlinkSocket.open());
    return new Rtnl(sock);
  }

  close(): void {
    this.sock.close();
  }

  /** The id this socket's namespace holds for the namespace at netnsPath, undefined when none (nsid.ts). */
  nsidOf(netnsPath: string): number | undefined {
    return nsidOf(this.sock, netnsPath);
  }

  /** The namespace at `path` gets an id in this socket's namespace unless it has one (nsid.ts says why). */
  netnsIdEnsure(path: string): void {
    netnsIdEnsure(this.sock, path);
  }

  /** The ifindex of a link; KernelError ENODEV when missing. */
  linkIndex(name: string): number {
    return linkIndex(this.sock, name, `link show ${name}`);
  }

  /** The link's ingress and egress filters become those of the shared tc blocks (a clsact qdisc); see tc.ts. */
  portBlocksJoin(ifindex: number, blocks: PortBlocks): void {
    portBlocksJoin(this.sock, ifindex, blocks);
  }

  /** A BPF program (SCHED_CLS) as the shared block's filter at `pref`; false when one is there, unless `replace`. */
  blockProgramAdd(block: number, pref: number, progFd: number, name: string, replace = false): boolean {
    return blockProgramAdd(this.sock, block, pref, progFd, name, replace);
  }

  /** The block's filter at `pref` goes; false when there was none. */
  blockFilterDel(block: number, pref: number): boolean {
    return blockFilterDel(this.sock, block, pref);
  }

  /** The filters of a shared block (empty: no such block). */
  blockFilters(block: number): BlockFilter[] {
    return blockFilters(this.sock, block);
  }

  /** The links whose clsact/ingress qdisc is joined to shared blocks: ifindex -> blocks. */
  joinedBlocks(): Map<number, JoinedBlocks> {
    return joinedBlocks(this.sock);
  }

  /** The blocks one link's clsact/ingress qdisc is joined to, undefined when none. */
  deviceBlocks(ifindex: number): JoinedBlocks | undefined {
    return deviceBlocks(this.sock, ifindex);
  }

  /** The link's clsact/ingress qdisc goes (and with it the link's share of any block); false when it had none. */
  ingressQdiscDel(ifindex: number): boolean {
    return ingressQdiscDel(this.sock, ifindex);
  }

  /** The ifindex of a link, or undefined when there is none. */
  linkIndexIfAny(name: string): number | undefined {
    try {
      return this.linkIndex(name);
    } catch (err) {
      if (err instanceof KernelError && err.errnoName === "ENODEV") return undefined;
      throw err;
    }
  }

  linkAdd(spec: LinkAddSpec): void {
    linkAdd(this.sock, spec);
  }

  linkDel(name: string): void {
    linkDel(this.sock, name);
  }

  /** Deletes all links of an interface group at once. */
  linkDelGroup(group: number): void {
    linkDelGroup(this.sock, group);
  }

  linkGet(name: string): Link | undefined {
    return linkGet(this.sock, name);
  }

  linkList(): Link[] {
    return linkList(this.sock);
  }

  /**
   * Links, addresses, routes of the main table and neighbours, read in four dumps on this one socket (one link dump
   * names the devices for the other three): a netns observed whole at the cost of a few round trips.
   */
  snapshot(): { links: Link[]; addrs: Addr[]; routes: Route[]; neighs: Neigh[] } {
    const links = linkList(this.sock);
    const names = new Map(links.map((l) => [l.index, l.name]));
    return {
      links,
      addrs: addrList(this.sock, names),
      routes: routeList(this.sock, names, { table: RT_TABLE_MAIN }),
      neighs: neighList(this.sock, names),
    };
  }

  /** How many ports bridge `master` has (kernel-filtered, not parsed). */
  linkPortCount(master: number): number {
    return linkPortCount(this.sock, master);
  }

  linkSet(name: string, change: LinkChange): void {
    linkSet(this.sock, name, change);
  }

  addrAdd(ifname: string, cidr: string, opts?: AddrOpts): void {
    addrAdd(this.sock, this.index(ifname, `addr add ${cidr} dev ${ifname}`), ifname, cidr, opts);
  }

  addrDel(ifname: string, cidr: string): void {
    addrDel(this.sock, this.index(ifname, `addr del ${cidr} dev ${ifname}`), ifname, cidr);
  }

  addrList(ifname?: string): Addr[] {
    const names = linkNames(this.sock);
    if (ifname === undefined) return addrList(this.sock, names);
    const index = [...names].find(([, n]) => n === ifname)?.[0];
    return index === undefined ? [] : addrList(this.sock, names, index);
  }

  routeAdd(r: RouteSpec): void {
    this.route("add", r);
  }

  routeReplace(r: RouteSpec): void {
    this.route("replace", r);
  }

  routeDel(r: RouteSpec): void {
    this.route("del", r);
  }

  private route(verb: "add" | "replace" | "del", r: RouteSpec): void {
    const dev = r.dev === undefined ? undefined : this.index(r.dev, `route ${verb} ${r.dst} dev ${r.dev}`);
    routeChange(this.sock, verb, r, dev);
  }

  /** Routes of all tables unless filtered; `dev`: only those through that device (none when it is missing). */
  routeList(filter: { family?: 4 | 6; table?: number; dev?: string } = {}): Route[] {
    const { dev, ...rest } = filter;
    if (dev === undefined) return routeList(this.sock, linkNames(this.sock), rest);
    const oif = this.linkIndexIfAny(dev);
    return oif === undefined ? [] : routeList(this.sock, new Map([[oif, dev]]), { ...rest, oif });
  }

  /** `ip route get ADDR`: the route (dev, gateway, source address in `src`) toward one address, if any. */
  routeGet(address: string): Route | undefined {
    return routeGet(this.sock, linkNames(this.sock), address);
  }

  tableHasRoutes(family: 4 | 6, table: number): boolean {
    return tableHasRoutes(this.sock, family, table);
  }

  ruleAdd(r: RuleSpec): void {
    ruleAdd(this.sock, r);
  }

  ruleDel(r: RuleSpec): void {
    ruleDel(this.sock, r);
  }

  ruleList(family: 4 | 6): Rule[] {
    return ruleList(this.sock, family);
  }

  /** The tables the family's rules point to. */
  ruleTables(family: 4 | 6): Set<number> {
    return ruleTables(this.sock, family);
  }

  neighAdd(n: NeighSpec): void {
    neighAdd(this.sock, this.index(n.ifname, `neigh add ${n.ip} dev ${n.ifname}`), n);
  }

  /** Adds the entry or changes the one there (`ip neigh replace`). */
  neighReplace(n: NeighSpec): void {
    neighReplace(this.sock, this.index(n.ifname, `neigh replace ${n.ip} dev ${n.ifname}`), n);
  }

  /** `bridge fdb append|replace|del ... self permanent`: see kernel/neigh.ts. */
  fdbChange(verb: "append" | "replace" | "del", f: FdbSpec): void {
    fdbChange(this.sock, this.index(f.ifname, `fdb ${verb} ${f.mac} dev ${f.ifname}`), verb, f);
  }

  /** The forwarding database of one device; [] when it is missing. */
  fdbList(ifname: string): FdbEntry[] {
    const index = this.linkIndexIfAny(ifname);
    return index === undefined ? [] : fdbList(this.sock, index, ifname);
  }

  neighDel(n: NeighSpec): void {
    neighDel(this.sock, this.index(n.ifname, `neigh del ${n.ip} dev ${n.ifname}`), n);
  }

  neighList(ifname?: string): Neigh[] {
    const names = linkNames(this.sock);
    if (ifname === undefined) return neighList(this.sock, names);
    const index = [...names].find(([, n]) => n === ifname)?.[0];
    return index === undefined ? [] : neighList(this.sock, names, index);
  }

  private index(name: string, op: string): number {
    return linkIndex(this.sock, name, op);
  }
}
