/**
 * What NAT (masquerade) and `internal` (no egress) networks keep in `table inet netctx`: 13 sets and 3 chains
 * (and the 4 direct-routing sets its forward chain reads, overlay-direct-objects.ts).
 *
 * Why this shape: the rule set is a fixed list of 20 rules; networks and interfaces only add set elements, so
 * the packet path costs the same set lookups with 1 network or 1000, and every change is an element diff.
 *  - `intra4`/`intra6` (`addr . addr`, interval): one element `S . T` per pair of subnets S, T of a network
 *    (one family). "saddr . daddr in intra" means "source and destination are in the same network", the no-NAT
 *    condition, with elements per network however many contexts it has.
 *  - `local4`/`local6` (`ifname . addr`, interval), for internal networks: one element per (interface of the
 *    network, subnet of the same network). "oif . saddr in local" means "the packet stays inside the network its
 *    source belongs to", the allowed-for-internal condition (in the input chain, "iif . daddr in local": the
 *    packet is for the gateway of its network), without pairs of interfaces (quadratic for routed networks,
 *    where every context has its own host-side veth) and without a netid in the packet mark (the l3
 *    level uses fwmarks for its routing tables; we must not clobber them). Deleting an element of such a set
 *    (pipapo) costs O(elements): at 1000 routed contexts, 64 of them took ~1 s, which is why only internal
 *    networks pay it.
 *    Correct because subnets of different networks never overlap (checked here, as IPAM does).
 *  - `nat4`/`nat6`: subnets of NAT networks; `internal_ifs`: interfaces of internal networks; `same_if`: see
 *    the forward chain.
 *  - `nets4`/`nets6` (comment = network name), `internal4`/`internal6` and `ifaces` (comment = network) are
 *    the registry: they are how a later process (the CLI is one-shot) learns a network's subnets and flags
 *    from the kernel when only `addInterface(network, ifname)` is called. No rule reads them.
 * br_netfilter (loaded here) makes bridged traffic pass the inet hooks too, with iif = oif = the bridge: such
 * traffic is never masqueraded (`intra` matches) and never dropped as internal egress (`same_if`).
 */
import type { ChainDecl, SetDecl } from "./tables.ts";

/** A NAT set: its key type always declared, since reading an element back depends on it. */
export type NatSet = SetDecl & { type: readonly string[] };

function natSet(name: string, type: string[], interval: boolean): NatSet {
  const decl = `type ${type.join(" . ")};${interval ? " flags interval;" : ""}`;
  return { kind: "set", name, decl, type, interval };
}

export const NAT_SETS: readonly NatSet[] = [
  natSet("nets4", ["ipv4_addr"], true),
  natSet("nets6", ["ipv6_addr"], true),
  natSet("nat4", ["ipv4_addr"], true),
  natSet("nat6", ["ipv6_addr"], true),
  natSet("internal4", ["ipv4_addr"], true),
  natSet("internal6", ["ipv6_addr"], true),
  natSet("ifaces", ["ifname"], false),
  natSet("internal_ifs", ["ifname"], false),
  natSet("same_if", ["ifname", "ifname"], false),
  natSet("local4", ["ifname", "ipv4_addr"], true),
  natSet("local6", ["ifname", "ipv6_addr"], true),
  natSet("intra4", ["ipv4_addr", "ipv4_addr"], true),
  natSet("intra6", ["ipv6_addr", "ipv6_addr"], true),
];

export const NAT_CHAINS: readonly ChainDecl[] = [
  {
    name: "postrouting",
    type: "nat",
    hook: "postrouting",
    prio: 100,
    prioText: "srcnat",
    rules: [
      "ip saddr . ip daddr @intra4 return",
      "ip6 saddr . ip6 daddr @intra6 return",
      "ip saddr @nat4 masquerade",
      "ip6 saddr @nat6 masquerade",
    ],
  },
  {
    name: "forward",
    type: "filter",
    hook: "forward",
    prio: 0,
    prioText: "filter",
    // br_netfilter is loaded on this machine (and on most Docker hosts): bridged frames between ports of one
    // bridge then pass the inet forward hook with iif = oif = the bridge, including ND/MLD with :: or fe80::
    // sources and multicast destinations that no subnet matches. `same_if` holds one `I . I` element per
    // interface of an internal network (linear, not pairs): whatever stays on its interface stays in its network.
    // From an internal network: the source must belong to the arrival interface's network (else a context
    // could spoof another network's address and leave through that network), and the packet must leave
    // through an interface of that same network. Into an internal network: only from the same network.
    // An internal overlay network with direct routing (overlay-direct-objects.ts) leaves and is entered through the
    // underlay device, which is no interface of it: the paths to and from its peers' blocks are accepted by exact
    // (addresses, next hop, sender) before the egress and ingress drops, and only after the source check. What
    // takes a direct path without having come from the network (the accept above did not take it) is dropped: nobody
    // on the underlay sends through this host as one of its contexts, to a peer that would take it for this host's.
    rules: [
      "iifname . oifname @same_if accept",
      "iifname @internal_ifs iifname . ip saddr != @local4 drop",
      "iifname @internal_ifs iifname . ip6 saddr != @local6 drop",
      "iifname @internal_ifs ip saddr . ip daddr . rt ip nexthop @direct_out4 accept",
      "iifname @internal_ifs ip6 saddr . ip6 daddr . rt ip6 nexthop @direct_out6 accept",
      "ip saddr . ip daddr . rt ip nexthop @direct_out4 drop",
      "ip6 saddr . ip6 daddr . rt ip6 nexthop @direct_out6 drop",
      "iifname @internal_ifs oifname . ip saddr != @local4 drop",
      "iifname @internal_ifs oifname . ip6 saddr != @local6 drop",
      "oifname @internal_ifs oifname . ip daddr @local4 ip saddr . ether saddr . ip daddr @direct_in4 accept",
      "oifname @internal_ifs oifname . ip6 daddr @local6 ip6 saddr . ether saddr . ip6 daddr @direct_in6 accept",
      "oifname @internal_ifs iifname . ip daddr != @local4 drop",
      "oifname @internal_ifs iifname . ip6 daddr != @local6 drop",
    ],
  },
  {
    name: "input",
    type: "filter",
    hook: "input",
    prio: 0,
    prioText: "filter",
    // From an internal network to the host itself (issue 15): a context that adds a default route of its own
    // reaches every local address, the host's other networks' gateways and the shared-stack contexts' addresses
    // among them, and none of that passes the forward hook. The only local addresses inside a network's subnets
    // are its gateways (subnets never overlap), so "the destination is in the arrival interface's network" is
    // "the destination is its gateway" (or its subnet's broadcast). Neighbour Discovery for the gateway goes to
    // solicited-node multicast and answers the host's link-local address: it stays allowed (ARP is no inet
    // traffic). After DNAT (prerouting), so a published port leads wherever its target is.
    rules: [
      "iifname @internal_ifs icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
      "iifname @internal_ifs iifname . ip daddr != @local4 drop",
      "iifname @internal_ifs iifname . ip6 daddr != @local6 drop",
    ],
  },
];

/** The number of rules in our NAT chains, whatever the number of networks and interfaces. */
export const RULE_COUNT = NAT_CHAINS.reduce((n, c) => n + c.rules.length, 0);
