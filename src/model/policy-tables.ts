/**
 * What the policies (issue 19) come to in the data path: a table of addresses with policy bits, and a table of
 * ports. The compiler (policy records, contexts and networks in; this out) and the data path (BPF maps that one
 * program per hook reads, for every level) meet here, so neither needs the other's insides.
 *
 * Each policy has a bit (its index, 0 .. MAX_POLICIES-1). A packet from S to D, protocol P, destination port N:
 *
 *   allowed  iff  it belongs to a connection already allowed (either direction; the data path tracks them)
 *            or   it is a TCP segment with ACK and without SYN: part of a connection made before (before the policy
 *                 that selects an end now, or before the data path was there at all); every new connection starts
 *                 with a SYN, decided below. Conntrack's loose pickup, Linux's default, does the same
 *            or   S = D (a context talking to itself)
 *            or   it is ICMPv6 Neighbour Discovery (types 133-137), or to a gateway address on UDP/TCP 53, UDP 67 or
 *                 UDP 547 (DNS and DHCP to the gateway stay open for selected contexts)
 *            or   ( not (S.isolateGroup != 0 and S.isolateGroup == D.isolateGroup) )
 *                 and ( not D.ingressSelected or (S.ingressFrom & D.ingressTo & ports(P, N)) != 0 )
 *                 and ( not S.egressSelected  or (S.egressFrom  & D.egressTo  & ports(P, N)) != 0 )
 *
 * where S and D are the entries found by longest-prefix match on the packet's addresses (no entry: every field
 * zero or false), and ports(P, N) = anyPort | the bits of the PortEntry {P, N} (zero when there is none). A
 * policy without ports (anyPort) also allows ICMP; a policy with ports allows only those.
 *
 * The compiler makes the longest-prefix match enough: an entry's bits already hold those of every CIDR-selector
 * entry that contains it (a context at 10.1.0.2/32 inside a `--from 10.0.0.0/8` policy carries that policy's
 * ingressFrom bit itself). `world` is the entries 0.0.0.0/0 and ::/0 and does not spread into more specific ones:
 * a context is not the world.
 */

/** Policy bits per direction and side, as this many 64-bit words: bit i is word i >> 6, bit i & 63. */
export const POLICY_WORDS = 4;
export const MAX_POLICIES = POLICY_WORDS * 64;

export interface AddressEntry {
  /** An address with its prefix length: a context's `10.1.0.2/32` or `fd00::2/128`, a CIDR selector's, world's `0.0.0.0/0`. */
  cidr: string;
  /** As a source: the ingress policies whose `--from` matches it. */
  ingressFrom: bigint;
  /** As a destination: the ingress policies whose `--to` selects it. */
  ingressTo: bigint;
  /** As a source: the egress policies whose `--from` selects it. */
  egressFrom: bigint;
  /** As a destination: the egress policies whose `--to` matches it. */
  egressTo: bigint;
  /** It accepts only what ingress policies allow: selected by one, or a context on a `--default-deny` network. */
  ingressSelected: boolean;
  /** It may send only what egress policies allow. */
  egressSelected: boolean;
  /** Non-zero: the group of an `--isolate` network it is a context of. Two members of one group never reach each other. */
  isolateGroup: number;
  /** One of a network's gateway addresses (DNS and DHCP to it stay open). */
  gateway: boolean;
}

export interface PortEntry {
  proto: "tcp" | "udp";
  port: number;
  /** The policies that allow this port. */
  bits: bigint;
}

export interface PolicyTables {
  addresses: AddressEntry[];
  ports: PortEntry[];
  /** The policies without `--port`: they allow every port and protocol. */
  anyPort: bigint;
}

/** No policy, no selected context: every packet passes (the data path may skip its lookups). */
export const OPEN_TABLES: PolicyTables = { addresses: [], ports: [], anyPort: 0n };

/** An entry with no bit and no flag (what an address without an entry counts as), with `fields` set. */
export function addressEntry(cidr: string, fields: Partial<Omit<AddressEntry, "cidr">> = {}): AddressEntry {
  return {
    cidr,
    ingressFrom: 0n,
    ingressTo: 0n,
    egressFrom: 0n,
    egressTo: 0n,
    ingressSelected: false,
    egressSelected: false,
    isolateGroup: 0,
    gateway: false,
    ...fields,
  };
}
