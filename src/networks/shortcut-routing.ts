/**
 * Host routing in BPF for the bridge shortcut of an overlay network (issue 18's throughput goals), as Cilium's BPF
 * host routing does it: a context's packet to another node's block, and a peer's packet to a context of this node,
 * are routed by the program (bpf_fib_lookup, the kernel's own routes and neighbours) and handed to their next device
 * at once, instead of going up through the bridge, the host's IP input, conntrack, the forward chain and out again.
 * On the tested 2-core machine that path was what kept the overlay below its goals (bench/overlay.ts).
 *
 *  - Onward (in the shortcut program, on the context's port, after its anti-spoofing check): a frame for the gateway
 *    whose IP destination lies in the network's subnets and which the host routes out of another device than the
 *    bridge: the VXLAN device (its neighbour entry gives the peer's VTEP MAC, its FDB the peer's underlay address) or,
 *    with --direct-routing, the underlay device (next hop the peer's underlay address). The frame gets the next hop's
 *    MAC, its TTL (hop limit) goes down by one, and it is sent from that device (bpf_redirect, egress).
 *  - Inbound (a program of its own on the VXLAN device's tcx ingress, so after the member guard, which drops VXLAN
 *    from other underlay addresses before the device decapsulates it; with --direct-routing also on the underlay
 *    device's, where nothing guards a non-internal network's direct packets on the slow path either): a packet for the host (PACKET_HOST) to an
 *    address in the network's subnets that the host routes to the bridge, whose neighbour is a context in the
 *    shortcut's map with that very address, is handed to that context's host-side veth, egress: the port's own
 *    egress hooks (the policy program) still see it, and its root qdisc.
 *
 * What the bypassed path did, and why nothing is lost: our forward chain acts only on --internal networks (which never
 * get the config entries below, so their packets keep the slow path) and on the direct paths of internal networks
 * (other subnets); NAT leaves traffic between a network's own subnets alone (the `intra` sets); a published port is
 * DNAT'd only for packets to a local address, and a neighbour reaching it through the host's address is masqueraded
 * to the gateway, so the reply goes to the gateway, which is local (bpf_fib_lookup: not forwarded) and takes the
 * slow path. Contexts with bandwidth limits are not in the map: neither their packets nor packets for them go short.
 * Anything the program is unsure of (no route, no neighbour yet, TTL at its end, MTU exceeded, another device) takes
 * the old path, which resolves it.
 *
 * The network's subnets live in the shortcut's own map under reserved keys (MACs 00:00:00:00:00:0X, which no port
 * has; their ifindex field is 0, which no port has either): the program itself stays the same for every network,
 * and a network without the entries (a bridge network, an internal overlay network) never routes onward.
 */
import { Helper, SkBuff } from "../kernel/bpf/abi.ts";
import { type Asm, FP, R0, R1, R2, R3, R4, R5, R6, R7, R9 } from "../kernel/bpf/asm.ts";
import { familyBits, ipBytes, parseSubnet } from "../net/cidr.ts";

/** What the shortcut of an overlay network routes onward, and where peers' packets come in. */
export interface ShortcutRoute {
  /** The network's subnets, one per family at most. */
  subnets: readonly string[];
  /** Devices whose ingress gets the inbound program: the network's VXLAN device. */
  inbound: readonly string[];
}

/** Reserved map keys: the network's IPv4 subnet (address @4, mask @8), IPv6 address (@4) and IPv6 mask (@4). */
export const CONFIG_KEYS = {
  v4: Uint8Array.of(0, 0, 0, 0, 0, 4),
  v6: Uint8Array.of(0, 0, 0, 0, 0, 6),
  v6mask: Uint8Array.of(0, 0, 0, 0, 0, 7),
} as const;

/** The config entries for these subnets, as [key, value] of the map's value size. */
export function configEntries(subnets: readonly string[], valueSize: number): [Uint8Array, Uint8Array][] {
  const out: [Uint8Array, Uint8Array][] = [];
  for (const text of subnets) {
    const s = parseSubnet(text, "subnet");
    const net = ipBytes({ family: s.family, addr: s.network });
    const mask = ipBytes({
      family: s.family,
      addr: allOnes(s.family) ^ ((1n << BigInt(familyBits(s.family) - s.prefix)) - 1n),
    });
    const value = (at: number, bytes: Uint8Array, more?: Uint8Array) => {
      const v = new Uint8Array(valueSize);
      v.set(bytes, at);
      if (more) v.set(more, at + bytes.length);
      return v;
    };
    if (s.family === 4) out.push([CONFIG_KEYS.v4, value(4, net, mask)]);
    else {
      out.push([CONFIG_KEYS.v6, value(4, net)]);
      out.push([CONFIG_KEYS.v6mask, value(4, mask)]);
    }
  }
  return out;
}

const allOnes = (family: 4 | 6) => (1n << BigInt(familyBits(family))) - 1n;

/** struct bpf_fib_lookup (64 bytes) on the stack at FP-64; the config key at FP-72. */
const FIB = -64;
const FIB_SIZE = 64;
const FIB_IFINDEX = FIB + 8;
const FIB_SMAC = FIB + 52;
const FIB_DMAC = FIB + 58;
const KEY = -72;
const AF = { 4: 2, 6: 10 } as const;

/**
 * Jumps to `miss` unless the packet's destination lies in the network's subnet of this family (its config entries).
 * R6 = skb, R7 = data, headers checked. Clobbers R0-R5, R9.
 */
function destinationInSubnet(a: Asm, mapFd: number, family: 4 | 6, miss: string): void {
  const lookup = (key: Uint8Array) => {
    a.st("w", FP, KEY, 0).st("h", FP, KEY + 4, key[4]! | (key[5]! << 8));
    a.ldMapFd(R1, mapFd).mov64Reg(R2, FP).alu64Imm("add", R2, KEY).call(Helper.map_lookup_elem);
    a.jmpImm("eq", R0, 0, miss);
  };
  if (family === 4) {
    lookup(CONFIG_KEYS.v4);
    a.ldx("w", R2, R0, 4)
      .ldx("w", R3, R0, 8)
      .ldx("w", R4, R7, 14 + 16);
    a.alu32Reg("and", R4, R3).jmp32Reg("ne", R4, R2, miss);
    return;
  }
  lookup(CONFIG_KEYS.v6);
  a.mov64Reg(R9, R0);
  lookup(CONFIG_KEYS.v6mask);
  for (let w = 0; w < 4; w++) {
    a.ldx("w", R2, R7, 14 + 24 + 4 * w).ldx("w", R3, R0, 4 + 4 * w);
    a.alu32Reg("and", R2, R3)
      .ldx("w", R4, R9, 4 + 4 * w)
      .jmp32Reg("ne", R2, R4, miss);
  }
}

/**
 * Fills struct bpf_fib_lookup from the packet, `iif` (an ifindex, or the skb's own when undefined) as the input device,
 * and looks the route up; jumps to `miss` unless the kernel would forward it with a resolved neighbour.
 * Also jumps to `miss` when the TTL (hop limit) would end here. R6 = skb, R7 = data, headers checked.
 */
function fibLookup(a: Asm, family: 4 | 6, iif: number | undefined, miss: string): void {
  a.ldx("b", R2, R7, family === 4 ? 14 + 8 : 14 + 7).jmp32Imm("le", R2, 1, miss);
  for (let off = FIB; off < 0; off += 8) a.st("dw", FP, off, 0);
  a.st("b", FP, FIB, AF[family]);
  if (iif === undefined) a.ldx("w", R2, R6, SkBuff.ifindex).stx("w", FP, FIB_IFINDEX, R2);
  else a.st("w", FP, FIB_IFINDEX, iif);
  if (family === 4) {
    a.ldx("b", R2, R7, 14 + 1).stx("b", FP, FIB + 12, R2);
    a.ldx("w", R2, R7, 14 + 12).stx("w", FP, FIB + 16, R2);
    a.ldx("w", R2, R7, 14 + 16).stx("w", FP, FIB + 32, R2);
  } else {
    // flowinfo: traffic class and flow label, the first word less its version nibble (little-endian load).
    a.ldx("w", R2, R7, 14)
      .alu32Imm("and", R2, 0xffffff0f)
      .stx("w", FP, FIB + 12, R2);
    for (let w = 0; w < 8; w++) a.ldx("w", R2, R7, 14 + 8 + 4 * w).stx("w", FP, FIB + 16 + 4 * w, R2);
  }
  a.mov64Reg(R1, R6).mov64Reg(R2, FP).alu64Imm("add", R2, FIB).mov64Imm(R3, FIB_SIZE).mov64Imm(R4, 0);
  a.call(Helper.fib_lookup).jmpImm("ne", R0, 0, miss);
}

/**
 * The next hop's MAC and the egress device's in the frame, TTL (hop limit) one down, IPv4's checksum mended; then
 * bpf_redirect to the device whose ifindex is in `target` (a register the helper calls keep: R9) or at the fib
 * result's. R6 = skb, R7 = data, headers checked.
 */
function forward(a: Asm, family: 4 | 6, target: "fib" | typeof R9): void {
  for (let i = 0; i < 6; i += 2) a.ldx("h", R2, FP, FIB_DMAC + i).stx("h", R7, i, R2);
  a.ldx("w", R2, FP, FIB_SMAC).stx("w", R7, 6, R2);
  a.ldx("h", R2, FP, FIB_SMAC + 4).stx("h", R7, 10, R2);
  if (target === "fib") a.ldx("w", R9, FP, FIB_IFINDEX);
  if (family === 4) {
    // TTL and protocol as one 16-bit word; the TTL is its low byte in a little-endian load and above 1 here.
    a.ldx("h", R3, R7, 14 + 8)
      .mov64Reg(R4, R3)
      .alu64Imm("add", R4, -1)
      .stx("h", R7, 14 + 8, R4);
    a.mov64Reg(R1, R6)
      .mov64Imm(R2, 14 + 10)
      .mov64Imm(R5, 2)
      .call(Helper.l3_csum_replace);
  } else {
    a.ldx("b", R2, R7, 14 + 7)
      .alu64Imm("add", R2, -1)
      .stx("b", R7, 14 + 7, R2);
  }
  a.mov64Reg(R1, R9).mov64Imm(R2, 0).call(Helper.redirect).exit();
}

/**
 * In the shortcut program, for a frame from a checked sender to the gateway: route it onward when the config entries
 * say so and the host routes it out of another device than the bridge; otherwise go on at `miss`.
 */
export function routeOnward(a: Asm, mapFd: number, family: 4 | 6, bridgeIfindex: number, miss: string): void {
  destinationInSubnet(a, mapFd, family, miss);
  fibLookup(a, family, bridgeIfindex, miss);
  a.ldx("w", R2, FP, FIB_IFINDEX).jmp32Imm("eq", R2, bridgeIfindex, miss);
  forward(a, family, "fib");
}

/**
 * The inbound program's body for one family: a packet for this host to a context of the network behind the bridge
 * goes to that context's port, egress. Otherwise on at `miss`. R6 = skb, R7 = data, headers checked.
 */
export function routeInbound(
  a: Asm,
  mapFd: number,
  family: 4 | 6,
  bridgeIfindex: number,
  miss: string,
): void {
  a.ldx("w", R2, R6, SkBuff.pktType).jmp32Imm("ne", R2, 0, miss);
  destinationInSubnet(a, mapFd, family, miss);
  fibLookup(a, family, undefined, miss);
  a.ldx("w", R2, FP, FIB_IFINDEX).jmp32Imm("ne", R2, bridgeIfindex, miss);
  // The neighbour the kernel would send it to must be a context of the network, unshaped (in the map), holding
  // exactly this destination address.
  a.ldMapFd(R1, mapFd).mov64Reg(R2, FP).alu64Imm("add", R2, FIB_DMAC).call(Helper.map_lookup_elem);
  a.jmpImm("eq", R0, 0, miss);
  a.ldx("w", R9, R0, 0).jmp32Imm("eq", R9, 0, miss);
  const words = family === 4 ? 1 : 4;
  const value = family === 4 ? 4 : 8;
  const dst = family === 4 ? 14 + 16 : 14 + 24;
  for (let w = 0; w < words; w++)
    a.ldx("w", R2, R0, value + 4 * w)
      .ldx("w", R3, R7, dst + 4 * w)
      .jmp32Reg("ne", R2, R3, miss);
  forward(a, family, R9);
}
