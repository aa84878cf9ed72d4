import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ProgType } from "../../src/kernel/bpf/abi.ts";
import { Asm, R0, R1, R2 } from "../../src/kernel/bpf/asm.ts";
import { loadProgram } from "../../src/kernel/bpf/attach.ts";
import { KernelError } from "../../src/kernel/errors.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("bpf assembler", () => {
  test("encodes jumps to labels, JMP32 compares and ld_imm64 as the kernel's struct bpf_insn", () => {
    const insns = new Asm()
      .ldx("w", R2, R1, 4)
      .jmp32Imm("ne", R2, 0xc800630a, "deny")
      .ldImm64(R0, 0x1122334455667788n)
      .exit()
      .label("deny")
      .ret(0)
      .assemble();
    assert.equal(
      hex(insns),
      [
        "61 12 0400 00000000", // ldxw r2, [r1+4]
        "56 02 0300 0a6300c8", // jne32 w2, 0xc800630a, +3 (ld_imm64 takes two slots; imm little-endian)
        "18 00 0000 88776655", // lddw r0, low half
        "00 00 0000 44332211", //       high half
        "95 00 0000 00000000", // exit
        "b7 00 0000 00000000", // mov r0, 0
        "95 00 0000 00000000",
      ]
        .join("")
        .replace(/ /g, ""),
    );
  });

  test("unknown labels and out-of-range immediates are refused at assembly", () => {
    assert.throws(() => new Asm().ja("nowhere").assemble(), /unknown label/);
    assert.throws(() => new Asm().mov64Imm(R0, 2 ** 33), /not 32-bit/);
  });

  test("a program the verifier refuses fails with errno and the verifier's log", () => {
    // r0 is never written: the verifier says "R0 !read_ok".
    const insns = new Asm().exit().assemble();
    assert.throws(
      () =>
        loadProgram({
          name: "nctx_bad",
          progType: ProgType.CGROUP_SOCK,
          attachType: "CGROUP_INET_SOCK_CREATE",
          insns,
        }),
      (err: unknown) =>
        err instanceof KernelError &&
        err.errnoName === "EACCES" &&
        /verifier log:[\s\S]*R0 !read_ok/.test(err.message),
    );
  });
});
