/**
 * A small typed eBPF assembler: enough for cgroup socket programs (loads, stores, ALU, 64- and 32-bit
 * jumps to labels, helper calls, ld_imm64). Output is the kernel's `struct bpf_insn` array, 8 bytes each,
 * little-endian (code, dst:4|src:4, off:s16, imm:s32).
 */

export type Reg = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10;
export const R0: Reg = 0;
export const R1: Reg = 1;
export const R2: Reg = 2;
export const R3: Reg = 3;
export const R4: Reg = 4;
export const R5: Reg = 5;
export const R6: Reg = 6;
export const R7: Reg = 7;
export const R8: Reg = 8;
export const R9: Reg = 9;
/** Frame pointer, read-only; the stack lives at negative offsets. */
export const FP: Reg = 10;

export type Size = "b" | "h" | "w" | "dw";
export type JmpOp = "eq" | "ne" | "gt" | "ge" | "lt" | "le" | "sgt" | "sge" | "slt" | "sle" | "set";
export type AluOp =
  | "add"
  | "sub"
  | "mul"
  | "div"
  | "or"
  | "and"
  | "lsh"
  | "rsh"
  | "mod"
  | "xor"
  | "mov"
  | "arsh";

const CLASS = { ld: 0x00, ldx: 0x01, st: 0x02, stx: 0x03, alu: 0x04, jmp: 0x05, jmp32: 0x06, alu64: 0x07 };
const SIZE: Record<Size, number> = { w: 0x00, h: 0x08, b: 0x10, dw: 0x18 };
const MODE_IMM = 0x00;
const MODE_MEM = 0x60;
const SRC_K = 0x00;
const SRC_X = 0x08;
const ALU: Record<AluOp, number> = {
  add: 0x00,
  sub: 0x10,
  mul: 0x20,
  div: 0x30,
  or: 0x40,
  and: 0x50,
  lsh: 0x60,
  rsh: 0x70,
  mod: 0x90,
  xor: 0xa0,
  mov: 0xb0,
  arsh: 0xc0,
};
const JMP: Record<JmpOp, number> = {
  eq: 0x10,
  gt: 0x20,
  ge: 0x30,
  set: 0x40,
  ne: 0x50,
  sgt: 0x60,
  sge: 0x70,
  lt: 0xa0,
  le: 0xb0,
  slt: 0xc0,
  sle: 0xd0,
};
const JA = 0x00;
const CALL = 0x80;
const EXIT = 0x90;

interface Insn {
  code: number;
  dst: Reg;
  src: number;
  off: number;
  imm: number;
  /** A jump whose offset is resolved from a label at assembly time. */
  target?: string;
}

function s32(v: number): number {
  if (!Number.isInteger(v) || v < -0x80000000 || v > 0xffffffff)
    throw new RangeError(`bpf asm: imm ${v} is not 32-bit`);
  return v | 0;
}

function s16(v: number): number {
  if (!Number.isInteger(v) || v < -0x8000 || v > 0x7fff)
    throw new RangeError(`bpf asm: offset ${v} is not 16-bit`);
  return v;
}

/** Builds one program; each method appends instructions and returns `this` for chaining. */
export class Asm {
  private readonly insns: Insn[] = [];
  private readonly labels = new Map<string, number>();

  private push(i: Insn): this {
    this.insns.push(i);
    return this;
  }

  /** Mark the position of the next instruction. */
  label(name: string): this {
    if (this.labels.has(name)) throw new Error(`bpf asm: duplicate label ${name}`);
    this.labels.set(name, this.insns.length);
    return this;
  }

  /** dst = imm (64-bit, imm sign-extended). */
  mov64Imm(dst: Reg, imm: number): this {
    return this.alu64Imm("mov", dst, imm);
  }
  /** wdst = imm: the low 32 bits are set and the upper 32 zeroed, so constants >= 2^31 stay unsigned. */
  mov32Imm(dst: Reg, imm: number): this {
    return this.alu32Imm("mov", dst, imm);
  }
  mov64Reg(dst: Reg, src: Reg): this {
    return this.alu64Reg("mov", dst, src);
  }
  alu64Imm(op: AluOp, dst: Reg, imm: number): this {
    return this.push({ code: CLASS.alu64 | ALU[op] | SRC_K, dst, src: 0, off: 0, imm: s32(imm) });
  }
  alu64Reg(op: AluOp, dst: Reg, src: Reg): this {
    return this.push({ code: CLASS.alu64 | ALU[op] | SRC_X, dst, src, off: 0, imm: 0 });
  }
  alu32Imm(op: AluOp, dst: Reg, imm: number): this {
    return this.push({ code: CLASS.alu | ALU[op] | SRC_K, dst, src: 0, off: 0, imm: s32(imm) });
  }
  alu32Reg(op: AluOp, dst: Reg, src: Reg): this {
    return this.push({ code: CLASS.alu | ALU[op] | SRC_X, dst, src, off: 0, imm: 0 });
  }

  /** dst = *(size *)(src + off) */
  ldx(size: Size, dst: Reg, src: Reg, off: number): this {
    return this.push({ code: CLASS.ldx | SIZE[size] | MODE_MEM, dst, src, off: s16(off), imm: 0 });
  }
  /** *(size *)(dst + off) = src */
  stx(size: Size, dst: Reg, off: number, src: Reg): this {
    return this.push({ code: CLASS.stx | SIZE[size] | MODE_MEM, dst, src, off: s16(off), imm: 0 });
  }
  /** *(size *)(dst + off) = imm; the verifier refuses this form on a context pointer: use stx there. */
  st(size: Size, dst: Reg, off: number, imm: number): this {
    return this.push({ code: CLASS.st | SIZE[size] | MODE_MEM, dst, src: 0, off: s16(off), imm: s32(imm) });
  }

  /** dst = 64-bit immediate (two instruction slots); src 1 = BPF_PSEUDO_MAP_FD with imm = the map fd. */
  ldImm64(dst: Reg, value: bigint, src = 0): this {
    const v = BigInt.asUintN(64, value);
    this.push({ code: CLASS.ld | SIZE.dw | MODE_IMM, dst, src, off: 0, imm: Number(v & 0xffffffffn) | 0 });
    return this.push({ code: 0, dst: 0, src: 0, off: 0, imm: Number(v >> 32n) | 0 });
  }
  ldMapFd(dst: Reg, mapFd: number): this {
    return this.ldImm64(dst, BigInt(mapFd), 1);
  }

  /** 64-bit compare: a constant is sign-extended to 64 bits, so 0x80000000 and up never match a u32 field. */
  jmpImm(op: JmpOp, dst: Reg, imm: number, target: string): this {
    return this.push({ code: CLASS.jmp | JMP[op] | SRC_K, dst, src: 0, off: 0, imm: s32(imm), target });
  }
  jmpReg(op: JmpOp, dst: Reg, src: Reg, target: string): this {
    return this.push({ code: CLASS.jmp | JMP[op] | SRC_X, dst, src, off: 0, imm: 0, target });
  }
  /** 32-bit compare (JMP32): the right one for u32 fields such as addresses. */
  jmp32Imm(op: JmpOp, dst: Reg, imm: number, target: string): this {
    return this.push({ code: CLASS.jmp32 | JMP[op] | SRC_K, dst, src: 0, off: 0, imm: s32(imm), target });
  }
  jmp32Reg(op: JmpOp, dst: Reg, src: Reg, target: string): this {
    return this.push({ code: CLASS.jmp32 | JMP[op] | SRC_X, dst, src, off: 0, imm: 0, target });
  }
  ja(target: string): this {
    return this.push({ code: CLASS.jmp | JA, dst: 0, src: 0, off: 0, imm: 0, target });
  }
  call(helper: number): this {
    return this.push({ code: CLASS.jmp | CALL, dst: 0, src: 0, off: 0, imm: helper });
  }
  exit(): this {
    return this.push({ code: CLASS.jmp | EXIT, dst: 0, src: 0, off: 0, imm: 0 });
  }
  /** r0 = value; exit */
  ret(value: number): this {
    return this.mov64Imm(R0, value).exit();
  }

  get length(): number {
    return this.insns.length;
  }

  /** Resolve labels and encode. */
  assemble(): Uint8Array {
    const out = new Uint8Array(this.insns.length * 8);
    const dv = new DataView(out.buffer);
    this.insns.forEach((insn, pc) => {
      let off = insn.off;
      if (insn.target !== undefined) {
        const at = this.labels.get(insn.target);
        if (at === undefined) throw new Error(`bpf asm: unknown label ${insn.target}`);
        off = s16(at - pc - 1);
      }
      dv.setUint8(pc * 8, insn.code);
      dv.setUint8(pc * 8 + 1, ((insn.src & 0xf) << 4) | (insn.dst & 0xf));
      dv.setInt16(pc * 8 + 2, off, true);
      dv.setInt32(pc * 8 + 4, insn.imm, true);
    });
    return out;
  }
}
