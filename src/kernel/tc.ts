/**
 * tc through rtnetlink, for one job: a BPF program on a device's ingress as a direct-action cls_bpf filter under a
 * clsact qdisc. Unlike tcx (BPF_PROG_ATTACH), which waits for an RCU grace period on every attach and detach
 * (~20 ms each on this VM), adding a qdisc and a filter to a device that is not up waits for nothing; both go
 * with the device.
 */
import { KernelError } from "./errors.ts";
import { AF_UNSPEC, type MessageWriter, type NetlinkSocket, NLM_F_CREATE, NLM_F_EXCL } from "./netlink.ts";

const RTM_NEWQDISC = 36;
const RTM_DELQDISC = 37;
const RTM_NEWTFILTER = 44;
const TCA_KIND = 1;
const TCA_OPTIONS = 2;
const TCA_BPF_FD = 6;
const TCA_BPF_NAME = 7;
const TCA_BPF_FLAGS = 8;
const TCA_BPF_FLAG_ACT_DIRECT = 1;
const TC_H_CLSACT = 0xfffffff1;
/** TC_H_MAKE(TC_H_CLSACT, 0): the clsact qdisc's own handle (ffff:). */
const CLSACT_HANDLE = 0xffff0000;
/** TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS): where ingress filters hang. */
const CLSACT_INGRESS = 0xfffffff2;
const ETH_P_ALL = 0x0003;
const FILTER_PRIO = 1;

function tcmsg(w: MessageWriter, ifindex: number, handle: number, parent: number, info: number): void {
  w.u8(AF_UNSPEC).u8(0).u16(0).i32(ifindex).u32(handle).u32(parent).u32(info);
}

/** clsact on the device, then the program as its ingress filter (protocol all, direct action). */
export function ingressProgramAdd(sock: NetlinkSocket, ifindex: number, progFd: number, name: string): void {
  sock.ack(`tc qdisc add clsact ifindex ${ifindex}`, RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, (w) => {
    tcmsg(w, ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0);
    w.attrStr(TCA_KIND, "clsact");
  });
  // tcm_info: priority in the upper 16 bits, the protocol in network byte order in the lower.
  const info = ((FILTER_PRIO << 16) | ((ETH_P_ALL & 0xff) << 8) | (ETH_P_ALL >> 8)) >>> 0;
  sock.ack(`tc filter add bpf ifindex ${ifindex}`, RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL, (w) => {
    tcmsg(w, ifindex, 0, CLSACT_INGRESS, info);
    w.attrStr(TCA_KIND, "bpf");
    const options = w.nestStart(TCA_OPTIONS);
    w.attrU32(TCA_BPF_FD, progFd).attrStr(TCA_BPF_NAME, name).attrU32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT);
    w.nestEnd(options);
  });
}

/** Removes the device's clsact qdisc with its filters; false when it had none. */
export function ingressProgramsClear(sock: NetlinkSocket, ifindex: number): boolean {
  try {
    sock.ack(`tc qdisc del clsact ifindex ${ifindex}`, RTM_DELQDISC, 0, (w) => {
      tcmsg(w, ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0);
    });
    return true;
  } catch (err) {
    if (err instanceof KernelError && ["ENOENT", "EINVAL"].includes(err.errnoName)) return false;
    throw err;
  }
}
