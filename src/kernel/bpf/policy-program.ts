/**
 * The policy data path's program (issue 19), one generator for every hook a packet of a context passes: the
 * cgroup-skb hooks of the shared-stack contexts' parent cgroup (l3, socket) and an l2 context's host-side veth, both
 * ways (a cls_bpf filter in its network's shared tc blocks, or tcx where the port is in none). Every variant decides the whole rule for the packet's source S and destination D (S's egress and
 * D's ingress): the bridge shortcut hands a frame from S's veth straight into D's netns, so the check on S's veth
 * must be the only one needed. The rule itself is model/policy-tables.ts's; the maps it reads:
 *
 *  - state (array, 3 entries of STATE_VALUE bytes): entry 0's first u32 is the active generation, 0 = no policy
 *    (pass after this one lookup), its second a write serial the program ignores (networks/policy-maps.ts); entries
 *    1 and 2 hold each generation's anyPort words. The tables are written in
 *    two generations, the inactive one filled while the active one is read, and one update of entry 0 switches.
 *  - addresses (LPM trie): key { prefixlen u32, generation u8, family u8, 0 u16, address[16] } with prefixlen
 *    32 + the address's own; value ADDRESS_VALUE (policy words per side, flags, isolate group). Every generation
 *    holds an entry at prefix 0 of each family, so a lookup always finds one.
 *  - ports (hash): key { generation u8, proto u8, port u16 in network order } -> the policy words of that port.
 *  - connections (LRU hash): the 5-tuple (addresses v4-mapped, ports in network order; an ICMP echo's identifier
 *    as both ports; 0 for anything else) of flows allowed while an end was selected or isolated, both directions: those pass from then on,
 *    whatever the tables become.
 */
import { ETH_P_IP_LE, ETH_P_IPV6_LE, Helper, ProgType, SkBuff } from "./abi.ts";
import { Asm, FP, R0, R1, R2, R3, R4, R6, R7, R8, R9, type Reg } from "./asm.ts";
import { countDrop } from "./counter-program.ts";
import type { ProgramSpec } from "./program-spec.ts";

export interface PolicyMapFds {
  state: number;
  addresses: number;
  ports: number;
  connections: number;
}

export type PolicyHook = "cgroup-ingress" | "cgroup-egress" | "tcx-ingress" | "tcx-egress";

/** Address value: four sides of `words` u64 each, then flags u32 and isolate group u32. */
export function addressLayout(words: number) {
  const side = words * 8;
  return {
    ingressFrom: 0,
    ingressTo: side,
    egressFrom: 2 * side,
    egressTo: 3 * side,
    flags: 4 * side,
    isolateGroup: 4 * side + 4,
    size: 4 * side + 8,
  };
}
export const FLAG_INGRESS_SELECTED = 1;
export const FLAG_EGRESS_SELECTED = 2;
export const FLAG_GATEWAY = 4;

export const ADDRESS_KEY_SIZE = 24;
export const PORT_KEY_SIZE = 4;
export const CONNECTION_KEY_SIZE = 40;
export const CONNECTION_VALUE_SIZE = 8;
export const STATE_ENTRIES = 3;
export const stateValueSize = (words: number) => words * 8;

/** The map names: how a later process tells the maps of an attached program apart (mapInfo). */
export const POLICY_MAP_NAMES = {
  state: "nctx_pol_state",
  addresses: "nctx_pol_addr",
  ports: "nctx_pol_port",
  connections: "nctx_pol_conn",
} as const;

export const POLICY_PROGRAM_NAMES: Record<PolicyHook, string> = {
  "cgroup-ingress": "nctx_pol_cgin",
  "cgroup-egress": "nctx_pol_cgeg",
  "tcx-ingress": "nctx_pol_tcin",
  "tcx-egress": "nctx_pol_tceg",
};

const IPPROTO_ICMP = 1;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_ICMPV6 = 58;
const ND_FIRST = 133;
const ND_LAST = 137;
const TCP_SYN = 0x02;
const TCP_ACK = 0x10;
/** A port as a little-endian u16 load of its network-order bytes sees it. */
const be16 = (port: number) => ((port & 0xff) << 8) | (port >> 8);

/**
 * Go on / drop. -1 is TCX_NEXT under tcx and TC_ACT_UNSPEC in a tc block: the next filter runs (the bridge
 * shortcut's), then the stack. 2 is TCX_DROP and TC_ACT_SHOT alike.
 */
const TCX_NEXT = -1;
const TCX_DROP = 2;

// Stack (offsets from the frame pointer).
const CT = -40; // connection key: saddr @0, daddr @16, sport @32, dport @34, proto @36
const CT_SPORT = CT + 32;
const CT_DPORT = CT + 34;
const CT_PROTO = CT + 36;
const LPM = -64; // prefixlen @0, generation @4, family @5, address @8
const BITS = -96; // ports(P, N) for this packet: `words` u64
const HDR = -136; // the IP header as loaded (40 bytes)
const IDX = -144; // u32 key into the state array
const PORT_KEY = -148;
const L4 = -176; // the first 8 bytes of the transport header (16 for TCP: its flags are byte 13)
const TCP_FLAGS = L4 + 13;
const ONE = -184; // the connection map's value

interface Variant {
  progType: number;
  attachType: ProgramSpec["attachType"];
  /** Where the IP header starts relative to skb->data: a cgroup hook sees the network header, tc the Ethernet one. */
  base: number;
  pass: number;
  drop: number;
}

const VARIANTS: Record<PolicyHook, Variant> = {
  "cgroup-ingress": {
    progType: ProgType.CGROUP_SKB,
    attachType: "CGROUP_INET_INGRESS",
    base: 0,
    pass: 1,
    drop: 0,
  },
  "cgroup-egress": {
    progType: ProgType.CGROUP_SKB,
    attachType: "CGROUP_INET_EGRESS",
    base: 0,
    pass: 1,
    drop: 0,
  },
  "tcx-ingress": {
    progType: ProgType.SCHED_CLS,
    attachType: "TCX_INGRESS",
    base: 14,
    pass: TCX_NEXT,
    drop: TCX_DROP,
  },
  "tcx-egress": {
    progType: ProgType.SCHED_CLS,
    attachType: "TCX_EGRESS",
    base: 14,
    pass: TCX_NEXT,
    drop: TCX_DROP,
  },
};

/** bpf_skb_load_bytes(skb = r6, offset, fp + to, len); the offset is a constant, or in a register. */
function loadBytes(a: Asm, offset: { imm: number } | { reg: Reg }, to: number, len: number): void {
  a.mov64Reg(R1, R6);
  if ("imm" in offset) a.mov64Imm(R2, offset.imm);
  else a.mov64Reg(R2, offset.reg);
  a.mov64Reg(R3, FP).alu64Imm("add", R3, to);
  a.mov64Imm(R4, len);
  a.call(Helper.skb_load_bytes);
}

/**
 * The transport header's first bytes into L4: 16 of TCP (a header has at least 20), so its flags are there; 8 of
 * anything else (a UDP datagram may carry no more).
 */
function loadTransport(a: Asm, family: 4 | 6, offset: { imm: number } | { reg: Reg }): void {
  a.mov64Imm(R4, 8);
  a.ldx("b", R2, FP, CT_PROTO).jmp32Imm("ne", R2, IPPROTO_TCP, `v${family}-l4-len`);
  a.mov64Imm(R4, 16);
  a.label(`v${family}-l4-len`);
  a.mov64Reg(R1, R6);
  if ("imm" in offset) a.mov64Imm(R2, offset.imm);
  else a.mov64Reg(R2, offset.reg);
  a.mov64Reg(R3, FP).alu64Imm("add", R3, L4);
  a.call(Helper.skb_load_bytes);
}

/** r0 = bpf_map_lookup_elem(map, fp + key) */
function lookup(a: Asm, mapFd: number, key: number): void {
  a.ldMapFd(R1, mapFd);
  a.mov64Reg(R2, FP).alu64Imm("add", R2, key);
  a.call(Helper.map_lookup_elem);
}

function copyStack(a: Asm, from: number, to: number, bytes: number): void {
  for (let o = 0; o < bytes; o += 8) a.ldx("dw", R2, FP, from + o).stx("dw", FP, to + o, R2);
}

/**
 * The packet's addresses, protocol and ports into the connection key. Jumps to `pass` for ND, to `drop` for a
 * header it cannot read; falls through to `decide-v4` / `decide-v6` otherwise.
 */
function parse(a: Asm, family: 4 | 6, v: Variant): void {
  const decide = `decide-v${family}`;
  a.label(`v${family}`);
  a.mov64Imm(R2, 0);
  for (let o = 0; o < 40; o += 8) a.stx("dw", FP, CT + o, R2);
  // Zero when no transport header is read (a later fragment, a short packet): no TCP flags then.
  a.stx("dw", FP, L4, R2).stx("dw", FP, L4 + 8, R2);
  loadBytes(a, { imm: v.base }, HDR, family === 4 ? 20 : 40);
  a.jmpImm("ne", R0, 0, "drop");
  if (family === 4) {
    // v4-mapped (::ffff:a.b.c.d), so one connection map serves both families.
    a.mov32Imm(R2, 0xffff);
    a.stx("h", FP, CT + 10, R2).stx("h", FP, CT + 26, R2);
    a.ldx("w", R2, FP, HDR + 12).stx("w", FP, CT + 12, R2);
    a.ldx("w", R2, FP, HDR + 16).stx("w", FP, CT + 28, R2);
    a.ldx("b", R2, FP, HDR + 9).stx("b", FP, CT_PROTO, R2);
    a.jmp32Imm("eq", R2, IPPROTO_TCP, "v4-l4").jmp32Imm("eq", R2, IPPROTO_UDP, "v4-l4");
    a.jmp32Imm("ne", R2, IPPROTO_ICMP, decide);
    a.label("v4-l4");
    // A fragment other than the first carries no transport header: it is decided on anyPort alone.
    a.ldx("h", R2, FP, HDR + 6)
      .alu32Imm("and", R2, 0xff1f)
      .jmp32Imm("ne", R2, 0, decide);
    // r8 (free until the address lookups) = where the transport header starts: the IHL in 4-byte words.
    a.ldx("b", R8, FP, HDR).alu32Imm("and", R8, 0xf).alu32Imm("lsh", R8, 2);
    a.jmp32Imm("lt", R8, 20, "drop");
    a.alu64Imm("add", R8, v.base);
    loadTransport(a, family, { reg: R8 });
  } else {
    copyStack(a, HDR + 8, CT, 32);
    a.ldx("b", R2, FP, HDR + 6).stx("b", FP, CT_PROTO, R2);
    a.jmp32Imm("eq", R2, IPPROTO_TCP, "v6-l4");
    a.jmp32Imm("eq", R2, IPPROTO_UDP, "v6-l4");
    a.jmp32Imm("ne", R2, IPPROTO_ICMPV6, decide);
    a.label("v6-l4");
    loadTransport(a, family, { imm: v.base + 40 });
  }
  a.jmpImm("ne", R0, 0, decide);
  a.ldx("b", R2, FP, CT_PROTO);
  a.jmp32Imm("eq", R2, family === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6, `v${family}-icmp`);
  a.ldx("w", R2, FP, L4).stx("w", FP, CT_SPORT, R2);
  a.ja(decide);
  a.label(`v${family}-icmp`);
  a.ldx("b", R2, FP, L4);
  if (family === 6) a.jmp32Imm("lt", R2, ND_FIRST, "v6-echo").jmp32Imm("le", R2, ND_LAST, "pass");
  a.label(`v${family}-echo`);
  // An echo request and its reply carry the same identifier: as both "ports", one key serves both ways.
  const [request, reply] = family === 4 ? [8, 0] : [128, 129];
  a.jmp32Imm("eq", R2, request, `v${family}-echo-id`).jmp32Imm("ne", R2, reply, decide);
  a.label(`v${family}-echo-id`);
  a.ldx("h", R2, FP, L4 + 4)
    .stx("h", FP, CT_SPORT, R2)
    .stx("h", FP, CT_DPORT, R2);
  if (family === 4) a.ja(decide);
}

/** r(dst) = the address entry of the connection key's source (at 0) or destination (at 16); drop when none. */
function lookupAddress(a: Asm, maps: PolicyMapFds, family: 4 | 6, side: 0 | 16, dst: Reg, gen: Reg): void {
  a.mov32Imm(R2, 32 + (family === 4 ? 32 : 128)).stx("w", FP, LPM, R2);
  // generation u8, family u8, 0 u16: one u32 store.
  a.mov64Reg(R2, gen)
    .alu32Imm("and", R2, 0xff)
    .alu32Imm("or", R2, family << 8);
  a.stx("w", FP, LPM + 4, R2);
  if (family === 4) {
    a.ldx("w", R2, FP, CT + side + 12).stx("w", FP, LPM + 8, R2);
    a.mov64Imm(R2, 0)
      .stx("w", FP, LPM + 12, R2)
      .stx("dw", FP, LPM + 16, R2);
  } else copyStack(a, CT + side, LPM + 8, 16);
  lookup(a, maps.addresses, LPM);
  a.jmpImm("eq", R0, 0, "drop");
  a.mov64Reg(dst, R0);
}

/** Jump to `allowed` when any word of (S at sOff) & (D at dOff) & BITS is set. */
function anyCommon(a: Asm, words: number, sOff: number, dOff: number, allowed: string): void {
  for (let w = 0; w < words; w++) {
    a.ldx("dw", R3, R8, sOff + 8 * w);
    a.ldx("dw", R4, R9, dOff + 8 * w);
    a.alu64Reg("and", R3, R4);
    a.ldx("dw", R4, FP, BITS + 8 * w);
    a.alu64Reg("and", R3, R4);
    a.jmpImm("ne", R3, 0, allowed);
  }
}

/** The rule of model/policy-tables.ts for a parsed packet; R7 holds the generation. */
function decide(a: Asm, maps: PolicyMapFds, family: 4 | 6, words: number): void {
  const L = addressLayout(words);
  const f = (name: string) => `${name}-v${family}`;
  a.label(`decide-v${family}`);
  // S = D: a context talking to itself.
  a.ldx("dw", R2, FP, CT)
    .ldx("dw", R3, FP, CT + 16)
    .jmpReg("ne", R2, R3, f("other"));
  a.ldx("dw", R2, FP, CT + 8)
    .ldx("dw", R3, FP, CT + 24)
    .jmpReg("eq", R2, R3, "pass");
  a.label(f("other"));
  // A TCP segment with ACK and without SYN belongs to a connection made before (every new one starts with a SYN,
  // which the rule below decides): it passes, as conntrack's loose pickup lets it. So a connection opened before a
  // policy selected an end, or before the port programs were even attached, keeps working; one that never existed
  // gets the receiver's RST and nothing more.
  a.ldx("b", R2, FP, CT_PROTO).jmp32Imm("ne", R2, IPPROTO_TCP, f("tracked"));
  a.ldx("b", R2, FP, TCP_FLAGS)
    .alu32Imm("and", R2, TCP_SYN | TCP_ACK)
    .jmp32Imm("eq", R2, TCP_ACK, "pass");
  a.label(f("tracked"));
  // A connection allowed before passes, whatever the tables say now.
  lookup(a, maps.connections, CT);
  a.jmpImm("ne", R0, 0, "pass");

  // ports(P, N) = anyPort of the generation | the bits of the port entry {P, N}.
  a.stx("w", FP, IDX, R7);
  lookup(a, maps.state, IDX);
  a.jmpImm("eq", R0, 0, "drop");
  for (let w = 0; w < words; w++) a.ldx("dw", R2, R0, 8 * w).stx("dw", FP, BITS + 8 * w, R2);
  a.ldx("b", R2, FP, CT_PROTO);
  a.jmp32Imm("eq", R2, IPPROTO_TCP, f("port")).jmp32Imm("ne", R2, IPPROTO_UDP, f("addresses"));
  a.label(f("port"));
  a.stx("b", FP, PORT_KEY, R7).stx("b", FP, PORT_KEY + 1, R2);
  a.ldx("h", R2, FP, CT_DPORT).stx("h", FP, PORT_KEY + 2, R2);
  lookup(a, maps.ports, PORT_KEY);
  a.jmpImm("eq", R0, 0, f("addresses"));
  for (let w = 0; w < words; w++)
    a.ldx("dw", R2, R0, 8 * w)
      .ldx("dw", R3, FP, BITS + 8 * w)
      .alu64Reg("or", R3, R2)
      .stx("dw", FP, BITS + 8 * w, R3);

  a.label(f("addresses"));
  lookupAddress(a, maps, family, 0, R8, R7);
  lookupAddress(a, maps, family, 16, R9, R7);

  // DNS and DHCP to a gateway stay open.
  a.ldx("w", R2, R9, L.flags).jmp32Imm("set", R2, FLAG_GATEWAY, f("gateway")).ja(f("isolate"));
  a.label(f("gateway"));
  a.ldx("b", R2, FP, CT_PROTO).ldx("h", R3, FP, CT_DPORT);
  a.jmp32Imm("ne", R2, IPPROTO_UDP, f("gateway-tcp"));
  for (const port of [53, 67, 547]) a.jmp32Imm("eq", R3, be16(port), "pass");
  a.label(f("gateway-tcp"));
  a.jmp32Imm("ne", R2, IPPROTO_TCP, f("isolate"));
  a.jmp32Imm("eq", R3, be16(53), "pass");

  // Two members of one isolated network never reach each other.
  a.label(f("isolate"));
  a.ldx("w", R2, R8, L.isolateGroup).jmp32Imm("eq", R2, 0, f("ingress"));
  a.ldx("w", R3, R9, L.isolateGroup).jmp32Reg("eq", R2, R3, "drop");

  a.label(f("ingress"));
  a.ldx("w", R2, R9, L.flags).jmp32Imm("set", R2, FLAG_INGRESS_SELECTED, f("ingress-check")).ja(f("egress"));
  a.label(f("ingress-check"));
  anyCommon(a, words, L.ingressFrom, L.ingressTo, f("egress"));
  a.ja("drop");

  a.label(f("egress"));
  a.ldx("w", R2, R8, L.flags).jmp32Imm("set", R2, FLAG_EGRESS_SELECTED, f("egress-check")).ja(f("track"));
  a.label(f("egress-check"));
  anyCommon(a, words, L.egressFrom, L.egressTo, f("track"));
  a.ja("drop");

  // Allowed: remember the flow both ways when an end is selected or isolated, so replies and the established
  // connection pass from now on.
  a.label(f("track"));
  a.ldx("w", R2, R8, L.flags).ldx("w", R3, R9, L.flags).alu32Reg("or", R2, R3);
  a.alu32Imm("and", R2, FLAG_INGRESS_SELECTED | FLAG_EGRESS_SELECTED);
  a.ldx("w", R3, R8, L.isolateGroup).alu32Reg("or", R2, R3);
  a.ldx("w", R3, R9, L.isolateGroup).alu32Reg("or", R2, R3);
  a.jmp32Imm("eq", R2, 0, "pass");
  a.ja("track");
}

/** Insert the connection key and its reverse into the connection map; then pass. */
function track(a: Asm, maps: PolicyMapFds): void {
  const insert = () => {
    a.ldMapFd(R1, maps.connections);
    a.mov64Reg(R2, FP).alu64Imm("add", R2, CT);
    a.mov64Reg(R3, FP).alu64Imm("add", R3, ONE);
    a.mov64Imm(R4, 0);
    a.call(Helper.map_update_elem);
  };
  a.label("track");
  a.mov64Imm(R2, 1).stx("dw", FP, ONE, R2);
  insert();
  for (const o of [0, 8]) {
    a.ldx("dw", R2, FP, CT + o).ldx("dw", R3, FP, CT + 16 + o);
    a.stx("dw", FP, CT + o, R3).stx("dw", FP, CT + 16 + o, R2);
  }
  a.ldx("h", R2, FP, CT_SPORT).ldx("h", R3, FP, CT_DPORT);
  a.stx("h", FP, CT_SPORT, R3).stx("h", FP, CT_DPORT, R2);
  insert();
  a.ja("pass");
}

/**
 * The program for one hook. `words`: u64 words of policy bits per side (model/policy-tables.ts POLICY_WORDS).
 * `dropCounters`: the traffic counters' map, where a cgroup hook's refusals are counted.
 * Packets that are not IPv4 or IPv6 (ARP) pass.
 */
export function policyProgram(
  maps: PolicyMapFds,
  hook: PolicyHook,
  words: number,
  dropCounters?: number,
): ProgramSpec {
  const v = VARIANTS[hook];
  const a = new Asm();
  a.mov64Reg(R6, R1);
  a.mov64Imm(R2, 0).stx("w", FP, IDX, R2);
  lookup(a, maps.state, IDX);
  a.jmpImm("eq", R0, 0, "pass");
  a.ldx("w", R7, R0, 0);
  a.jmp32Imm("eq", R7, 0, "pass");
  a.ldx("w", R2, R6, SkBuff.protocol);
  a.jmp32Imm("eq", R2, ETH_P_IP_LE, "v4");
  a.jmp32Imm("eq", R2, ETH_P_IPV6_LE, "v6");
  a.ja("pass");
  parse(a, 4, v);
  decide(a, maps, 4, words);
  parse(a, 6, v);
  decide(a, maps, 6, words);
  track(a, maps);
  a.label("pass").ret(v.pass);
  a.label("drop");
  // On the cgroup hooks a refusal is the context's drop (counter-program.ts); an l2 port's are not counted here.
  const direction = hook === "cgroup-ingress" ? "rx" : hook === "cgroup-egress" ? "tx" : undefined;
  if (dropCounters !== undefined && direction) countDrop(a, dropCounters, direction, v.drop);
  else a.ret(v.drop);
  return {
    name: POLICY_PROGRAM_NAMES[hook],
    progType: v.progType,
    attachType: v.attachType,
    insns: a.assemble(),
  };
}
