/**
 * BPF_PROG_TEST_RUN: run a loaded program on a packet of our making, without a device or a socket. For a tc
 * program the packet starts at its Ethernet header (the kernel sets skb->protocol from it); the answer is the
 * program's return value and the kernel's average time per run.
 */
import { BPF_ATTR_SIZE, BpfCmd, bpf, NativeBuffer, withBuffers } from "./syscall.ts";

export function testRunProgram(
  progFd: number,
  packet: Uint8Array,
  repeat = 1,
): { retval: number; ns: number } {
  const data = NativeBuffer.from(packet);
  try {
    return withBuffers([BPF_ATTR_SIZE], (attr) => {
      attr.view.setUint32(0, progFd, true);
      attr.view.setUint32(8, packet.length, true);
      attr.view.setBigUint64(16, data.address, true);
      attr.view.setUint32(32, repeat, true);
      bpf(BpfCmd.PROG_TEST_RUN, attr, "bpf prog test run");
      return { retval: attr.view.getInt32(4, true), ns: attr.view.getUint32(36, true) };
    });
  } finally {
    data.free();
  }
}
