/**
 * The source guard of a macvlan parent (networks/macvlan-guard.ts): a tcx egress program on the parent, in the host's
 * netns, before the policy program. Every frame a macvlan context sends off the host leaves through the parent's
 * dev_queue_xmit, PACKET_QDISC_BYPASS or not (it skips only the context's own device's qdisc), so this is where its
 * source is checked. Root inside a context may write any source MAC and address into a frame, and may change its
 * macvlan's MAC (to anything but a sibling's: EADDRINUSE); the policy program decides by address, so without this a
 * context could pose as an address no policy selects, answer ARP for it, and leave its own egress policy behind.
 *
 * One hash map, key { parent ifindex u32, source MAC [6], 0 u16 } -> value { flags u32, IPv4 [4], IPv6 [16] }: a
 * context's MAC with its addresses, and the parent's own MAC flagged HOST (the host's own frames pass unchecked).
 *
 *  - a source MAC not in the map: dropped (a changed MAC, a forged one, a macvlan made behind netctx's back);
 *  - a VLAN tag, or an EtherType other than IPv4, ARP, IPv6: dropped (the policy program reads untagged IP only);
 *  - IPv4: the source must be the context's; ARP: the sender hardware address must be the frame's source MAC and the
 *    sender address the context's (or 0.0.0.0, a probe);
 *  - IPv6: the source must be the context's, or link-local / unspecified for Neighbour Discovery and MLD only
 *    (ICMPv6 130-137, 143); a neighbour advertisement's target must be the context's address or link-local.
 *
 * A context may still write a sibling's MAC and address together into a frame: the answer goes to that MAC, which
 * the macvlan driver hands to the sibling (who owns it), never to the forger. One-way frames only.
 */
import { Helper, ProgType } from "./abi.ts";
import { Asm, FP, R0, R1, R2, R3, R4, R6, R7 } from "./asm.ts";
import type { ProgramSpec } from "./program-spec.ts";

export const MACVLAN_GUARD_NAME = "nctx_mv_src";
export const MACVLAN_GUARD_MAP_NAME = "nctx_mv_srcmap";
export const GUARD_KEY_SIZE = 12;
export const GUARD_VALUE_SIZE = 24;
export const GUARD_FLAG_HOST = 1;

/** __sk_buff.vlan_present, __sk_buff.ifindex */
const SKB_VLAN_PRESENT = 20;
const SKB_IFINDEX = 40;

const TCX_NEXT = -1;
const TCX_DROP = 2;

// Stack (the verifier refuses misaligned stack access: each field is loaded where it can be read aligned)
const KEY = -16; // ifindex @0, the source MAC @4, 0 @10
const ETHERTYPE = -24;
const BUF = -80; // 40 bytes: the IPv6 header, or ARP's sender fields
const AUX = -104; // 24 bytes: ICMPv6 type @0, a neighbour advertisement's target @8

// EtherTypes as a little-endian u16 load of their network-order bytes.
const ETH_IP = 0x0008;
const ETH_ARP = 0x0608;
const ETH_IPV6 = 0xdd86;

function loadBytes(a: Asm, offset: number, to: number, len: number): void {
  a.mov64Reg(R1, R6);
  a.mov64Imm(R2, offset);
  a.mov64Reg(R3, FP).alu64Imm("add", R3, to);
  a.mov64Imm(R4, len);
  a.call(Helper.skb_load_bytes);
  a.jmpImm("ne", R0, 0, "drop");
}

/** Jump to `match` when the 16 bytes at fp+at equal the context's IPv6 address (value @8, in R7). */
function isOwnV6(a: Asm, at: number, match: string, label: string): void {
  a.ldx("dw", R2, FP, at).ldx("dw", R3, R7, 8).jmpReg("ne", R2, R3, label);
  a.ldx("dw", R2, FP, at + 8)
    .ldx("dw", R3, R7, 16)
    .jmpReg("eq", R2, R3, match);
  a.label(label);
}

/** Jump to `match` when the 16 bytes at fp+at are fe80::/10. */
function isLinkLocal(a: Asm, at: number, match: string): void {
  a.ldx("h", R2, FP, at).alu32Imm("and", R2, 0xc0ff).jmp32Imm("eq", R2, 0x80fe, match);
}

export function macvlanGuardProgram(mapFd: number): ProgramSpec {
  const a = new Asm();
  a.mov64Reg(R6, R1);
  a.mov64Imm(R2, 0)
    .stx("dw", FP, KEY, R2)
    .stx("dw", FP, KEY + 8, R2)
    .stx("dw", FP, ETHERTYPE, R2);
  a.ldx("w", R2, R6, SKB_IFINDEX).stx("w", FP, KEY, R2);
  loadBytes(a, 6, KEY + 4, 6);
  loadBytes(a, 12, ETHERTYPE, 2);
  a.ldMapFd(R1, mapFd);
  a.mov64Reg(R2, FP).alu64Imm("add", R2, KEY);
  a.call(Helper.map_lookup_elem);
  a.jmpImm("eq", R0, 0, "drop");
  a.mov64Reg(R7, R0);
  a.ldx("w", R2, R7, 0).jmp32Imm("set", R2, GUARD_FLAG_HOST, "pass");
  a.ldx("w", R2, R6, SKB_VLAN_PRESENT).jmp32Imm("ne", R2, 0, "drop");
  a.ldx("h", R2, FP, ETHERTYPE);
  a.jmp32Imm("eq", R2, ETH_IP, "v4").jmp32Imm("eq", R2, ETH_ARP, "arp").jmp32Imm("eq", R2, ETH_IPV6, "v6");
  a.ja("drop");

  a.label("v4");
  loadBytes(a, 14 + 12, BUF, 4);
  a.ldx("w", R2, FP, BUF).ldx("w", R3, R7, 4).jmp32Reg("eq", R2, R3, "pass");
  a.ja("drop");

  // ARP: sender hardware address @8 (6 bytes), sender protocol address @14 (4 bytes).
  a.label("arp");
  loadBytes(a, 14 + 8, BUF, 6);
  a.ldx("w", R2, FP, BUF)
    .ldx("w", R3, FP, KEY + 4)
    .jmp32Reg("ne", R2, R3, "drop");
  a.ldx("h", R2, FP, BUF + 4)
    .ldx("h", R3, FP, KEY + 8)
    .jmp32Reg("ne", R2, R3, "drop");
  loadBytes(a, 14 + 14, BUF + 8, 4);
  a.ldx("w", R2, FP, BUF + 8).jmp32Imm("eq", R2, 0, "pass");
  a.ldx("w", R3, R7, 4).jmp32Reg("eq", R2, R3, "pass");
  a.ja("drop");

  // IPv6: the header's source @8; next header @6.
  a.label("v6");
  loadBytes(a, 14, BUF, 40);
  isOwnV6(a, BUF + 8, "v6-own", "v6-not-own");
  isLinkLocal(a, BUF + 8, "v6-local");
  a.ldx("dw", R2, FP, BUF + 8).jmpImm("ne", R2, 0, "drop");
  a.ldx("dw", R2, FP, BUF + 16).jmpImm("ne", R2, 0, "drop");
  a.label("v6-local");
  // Link-local or unspecified: Neighbour Discovery and MLD only.
  a.ldx("b", R2, FP, BUF + 6).jmp32Imm("ne", R2, 58, "drop");
  loadBytes(a, 14 + 40, AUX, 1);
  a.ldx("b", R2, FP, AUX).jmp32Imm("eq", R2, 143, "pass");
  a.jmp32Imm("lt", R2, 130, "drop").jmp32Imm("gt", R2, 137, "drop");
  a.jmp32Imm("eq", R2, 136, "na");
  a.ja("pass");
  a.label("v6-own");
  a.ldx("b", R2, FP, BUF + 6).jmp32Imm("ne", R2, 58, "pass");
  loadBytes(a, 14 + 40, AUX, 1);
  a.ldx("b", R2, FP, AUX).jmp32Imm("ne", R2, 136, "pass");
  // A neighbour advertisement: its target (@8 of the ICMPv6 message) is an address the context may speak for.
  a.label("na");
  loadBytes(a, 14 + 40 + 8, AUX + 8, 16);
  isOwnV6(a, AUX + 8, "pass", "na-not-own");
  isLinkLocal(a, AUX + 8, "pass");
  a.ja("drop");

  a.label("pass").ret(TCX_NEXT);
  a.label("drop").ret(TCX_DROP);
  return {
    name: MACVLAN_GUARD_NAME,
    progType: ProgType.SCHED_CLS,
    attachType: "TCX_EGRESS",
    insns: a.assemble(),
  };
}

/** The map key of a MAC ("aa:bb:cc:dd:ee:ff") on the parent `ifindex`. */
export function guardKey(ifindex: number, mac: string): Uint8Array {
  const key = new Uint8Array(GUARD_KEY_SIZE);
  new DataView(key.buffer).setUint32(0, ifindex, true);
  key.set(
    mac.split(":").map((h) => Number.parseInt(h, 16)),
    4,
  );
  return key;
}

/** The map value: flags, the IPv4 address (4 bytes, network order, or zeros), the IPv6 one (16 bytes, or zeros). */
export function guardValue(flags: number, v4?: Uint8Array, v6?: Uint8Array): Uint8Array {
  const value = new Uint8Array(GUARD_VALUE_SIZE);
  new DataView(value.buffer).setUint32(0, flags, true);
  if (v4) value.set(v4, 4);
  if (v6) value.set(v6, 8);
  return value;
}
