/**
 * Programs on a device's tc ingress through tcx (bpf_mprog, kernel 6.6+): attached by ifindex with BPF_PROG_ATTACH,
 * no qdisc and no link fd to keep; an attachment lasts as long as the device. Older kernels answer EINVAL.
 */
import { AttachType } from "./programs.ts";
import { BPF_ATTR_SIZE, BpfCmd, bpf, withBuffers } from "./syscall.ts";

function tcxAttr(attr: { view: DataView; bytes: Uint8Array }, ifindex: number, progFd: number): void {
  attr.bytes.fill(0);
  attr.view.setUint32(0, ifindex, true);
  attr.view.setUint32(4, progFd, true);
  attr.view.setUint32(8, AttachType.TCX_INGRESS, true);
}

/** Appends the program to the device's ingress programs. */
export function attachTcxIngress(ifindex: number, progFd: number): void {
  withBuffers([BPF_ATTR_SIZE], (attr) => {
    tcxAttr(attr, ifindex, progFd);
    bpf(BpfCmd.PROG_ATTACH, attr, `bpf tcx attach ifindex ${ifindex}`);
  });
}

export function detachTcxIngress(ifindex: number, progFd: number): void {
  withBuffers([BPF_ATTR_SIZE], (attr) => {
    tcxAttr(attr, ifindex, progFd);
    bpf(BpfCmd.PROG_DETACH, attr, `bpf tcx detach ifindex ${ifindex}`);
  });
}
