/**
 * Traffic counters of the shared-stack contexts (issue 21): one per-CPU map keyed by the cgroup id of the packet's
 * socket (bpf_skb_cgroup_id: the cgroup whose programs run for it, the context's own), and one cgroup-skb program per
 * direction that adds each packet to its cgroup's entry. Per-CPU values need no atomic add; the reader sums the CPUs.
 *
 * Drops: the kernel runs every program of a cgroup-skb hook whatever an earlier one decided (the verdicts are ANDed)
 * and does not let a cgroup-skb program read the verdict so far (bpf_get_retval is refused there), so the counter
 * cannot tell a refused packet from a passed one. The programs that refuse count their refusals themselves: their
 * drop paths end in `countDrop` (programs.ts ingress, device-programs.ts egress, policy-program.ts cgroup hooks).
 * rx and tx count every packet that reached the hook, refused ones too.
 *
 * Packets are counted in segments (a GSO/GRO packet of the stack counts its gso_segs), bytes as the IP layer sees
 * them (no Ethernet header, unlike an l2 context's device counters).
 */
import { Helper, ProgType } from "./abi.ts";
import { Asm, FP, R0, R1, R2, R3, R4, R6, R7, R8, type Reg } from "./asm.ts";
import type { ProgramSpec } from "./program-spec.ts";

export type CounterDirection = "rx" | "tx";

/** The value: u64 bytes, packets, drops for rx, then for tx. */
export const COUNTER_FIELDS = { bytes: 0, packets: 8, drops: 16 } as const;
export const DIRECTION_BASE: Record<CounterDirection, number> = { rx: 0, tx: 24 };
export const COUNTER_VALUE_SIZE = 48;
export const COUNTER_KEY_SIZE = 8;

export const COUNTER_MAP_NAME = "nctx_counters";
export const COUNTER_PROGRAM_NAMES: Record<CounterDirection, string> = {
  rx: "nctx_count_in",
  tx: "nctx_count_out",
};

/** struct __sk_buff: len @0, gso_segs @164. */
const SKB_LEN = 0;
const SKB_GSO_SEGS = 164;
const BPF_NOEXIST = 1;

// Stack: the key, and a value for a first insertion. Programs that count drops no longer need their stack then.
const KEY = -8;
const VALUE = -8 - COUNTER_VALUE_SIZE;

/**
 * Adds r(bytes) to `bytesField` (when given) and r(count) to `countField` of the entry of the packet in r6's cgroup,
 * inserting the entry when the cgroup has none yet. Clobbers r0-r5; r6 (the skb), r7, r8 are kept.
 */
function bump(
  a: Asm,
  mapFd: number,
  label: string,
  count: { field: number; reg: Reg },
  bytes?: { field: number; reg: Reg },
): void {
  a.mov64Reg(R1, R6).call(Helper.skb_cgroup_id);
  a.stx("dw", FP, KEY, R0);
  a.ldMapFd(R1, mapFd);
  a.mov64Reg(R2, FP).alu64Imm("add", R2, KEY);
  a.call(Helper.map_lookup_elem);
  a.jmpImm("eq", R0, 0, `${label}-new`);
  for (const f of bytes ? [count, bytes] : [count])
    a.ldx("dw", R1, R0, f.field).alu64Reg("add", R1, f.reg).stx("dw", R0, f.field, R1);
  a.ja(`${label}-done`);
  a.label(`${label}-new`);
  a.mov64Imm(R1, 0);
  for (let o = 0; o < COUNTER_VALUE_SIZE; o += 8) a.stx("dw", FP, VALUE + o, R1);
  for (const f of bytes ? [count, bytes] : [count]) a.stx("dw", FP, VALUE + f.field, f.reg);
  a.ldMapFd(R1, mapFd);
  a.mov64Reg(R2, FP).alu64Imm("add", R2, KEY);
  a.mov64Reg(R3, FP).alu64Imm("add", R3, VALUE);
  // Another CPU may insert it meanwhile (EEXIST): that packet goes uncounted, nothing worse.
  a.mov64Imm(R4, BPF_NOEXIST).call(Helper.map_update_elem);
  a.label(`${label}-done`);
}

/** r(dst) = the packet's segments: gso_segs, or 1 for a packet the stack did not aggregate. */
function segments(a: Asm, dst: Reg, label: string): void {
  a.ldx("w", dst, R6, SKB_GSO_SEGS);
  a.jmpImm("ne", dst, 0, label);
  a.mov64Imm(dst, 1);
  a.label(label);
}

/**
 * Counts one refused packet for the context of the skb in r6, then returns `verdict`. The end of a drop path in the
 * programs that refuse packets; r6 must hold the skb there. `label` names its jump targets (one per drop path).
 */
export function countDrop(
  a: Asm,
  mapFd: number,
  direction: CounterDirection,
  verdict: number,
  label = "drop-count",
): void {
  segments(a, R7, `${label}-segs`);
  bump(a, mapFd, label, { field: DIRECTION_BASE[direction] + COUNTER_FIELDS.drops, reg: R7 });
  a.ret(verdict);
}

/** The counter of one direction: every packet passes, its length and segments added to its cgroup's entry. */
export function counterProgram(mapFd: number, direction: CounterDirection): ProgramSpec {
  const a = new Asm();
  const base = DIRECTION_BASE[direction];
  a.mov64Reg(R6, R1);
  a.ldx("w", R8, R6, SKB_LEN);
  segments(a, R7, "segs");
  bump(
    a,
    mapFd,
    "count",
    { field: base + COUNTER_FIELDS.packets, reg: R7 },
    { field: base + COUNTER_FIELDS.bytes, reg: R8 },
  );
  a.ret(1);
  return {
    name: COUNTER_PROGRAM_NAMES[direction],
    progType: ProgType.CGROUP_SKB,
    attachType: direction === "rx" ? "CGROUP_INET_INGRESS" : "CGROUP_INET_EGRESS",
    insns: a.assemble(),
  };
}

/** What one cgroup counted, summed over the CPUs. */
export interface CgroupCounts {
  rx: { bytes: number; packets: number; drops: number };
  tx: { bytes: number; packets: number; drops: number };
}

/** One entry's per-CPU value (COUNTER_VALUE_SIZE bytes a CPU) summed. */
export function sumPerCpu(value: Uint8Array, cpus: number): CgroupCounts {
  const dv = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const field = (offset: number) => {
    let sum = 0n;
    for (let cpu = 0; cpu < cpus; cpu++) sum += dv.getBigUint64(cpu * COUNTER_VALUE_SIZE + offset, true);
    return Number(sum);
  };
  const side = (d: CounterDirection) => ({
    bytes: field(DIRECTION_BASE[d] + COUNTER_FIELDS.bytes),
    packets: field(DIRECTION_BASE[d] + COUNTER_FIELDS.packets),
    drops: field(DIRECTION_BASE[d] + COUNTER_FIELDS.drops),
  });
  return { rx: side("rx"), tx: side("tx") };
}
