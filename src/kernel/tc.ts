/**
 * tc through rtnetlink, for one job: BPF programs on the ingress of many devices through one shared filter block.
 * Each device gets an `ingress` qdisc joined to the block (TCA_INGRESS_BLOCK); the block holds a direct-action
 * cls_bpf filter. Both choices are about cost as devices pile up:
 *  - tcx (BPF_PROG_ATTACH by ifindex) waits for an RCU grace period on every attach and detach (~20 ms here);
 *  - a qdisc with a block of its own registers that block in the kernel's global list of offload candidates, which
 *    every later bind and unbind walks (flow_indr_dev_setup_offload: 0.24 ms a device at 1000 devices). A shared
 *    block is one entry however many devices join it.
 * A block lives as long as a device is joined to it, its filters with it.
 */
import { KernelError } from "./errors.ts";
import {
  AF_UNSPEC,
  type Message,
  type MessageWriter,
  type NetlinkSocket,
  NLM_F_CREATE,
  NLM_F_EXCL,
  parseAttrs,
} from "./netlink.ts";

const RTM_NEWQDISC = 36;
const RTM_DELQDISC = 37;
const RTM_GETQDISC = 38;
const RTM_NEWTFILTER = 44;
const TCA_KIND = 1;
const TCA_OPTIONS = 2;
const TCA_INGRESS_BLOCK = 13;
const TCA_MAX = 16;
const TCMSG_LEN = 20;
const TCA_BPF_FD = 6;
const TCA_BPF_NAME = 7;
const TCA_BPF_FLAGS = 8;
const TCA_BPF_FLAG_ACT_DIRECT = 1;
const TC_H_INGRESS = 0xfffffff1;
/** TC_H_MAKE(TC_H_INGRESS, 0): the ingress qdisc's handle (ffff:). */
const INGRESS_HANDLE = 0xffff0000;
/** tcm_ifindex of a request addressed to a shared block (tcm_parent then holds the block index). */
const TCM_IFINDEX_MAGIC_BLOCK = 0xffffffff;
const ETH_P_ALL = 0x0003;
const FILTER_PRIO = 1;
const FILTER_HANDLE = 1;

function tcmsg(w: MessageWriter, ifindex: number, handle: number, parent: number, info: number): void {
  w.u8(AF_UNSPEC).u8(0).u16(0).u32(ifindex).u32(handle).u32(parent).u32(info);
}

/** An ingress qdisc on the device, its filters those of shared block `block` (made if it does not exist). */
export function ingressBlockJoin(sock: NetlinkSocket, ifindex: number, block: number): void {
  sock.ack(
    `tc qdisc add ingress_block ${block} ifindex ${ifindex}`,
    RTM_NEWQDISC,
    NLM_F_CREATE | NLM_F_EXCL,
    (w) => {
      tcmsg(w, ifindex, INGRESS_HANDLE, TC_H_INGRESS, 0);
      w.attrStr(TCA_KIND, "ingress");
      w.attrU32(TCA_INGRESS_BLOCK, block);
    },
  );
}

/**
 * The program as the block's filter (protocol all, direct action); false when the block has it already (one
 * fixed priority and handle, so a second writer gets EEXIST). With `replace`, a filter already there gets this
 * program instead (cls_bpf swaps it in one step: no frame meets the block without one).
 */
export function blockProgramAdd(
  sock: NetlinkSocket,
  block: number,
  progFd: number,
  name: string,
  replace = false,
): boolean {
  // tcm_info: priority in the upper 16 bits, the protocol in network byte order in the lower.
  const info = ((FILTER_PRIO << 16) | ((ETH_P_ALL & 0xff) << 8) | (ETH_P_ALL >> 8)) >>> 0;
  const flags = replace ? NLM_F_CREATE : NLM_F_CREATE | NLM_F_EXCL;
  try {
    sock.ack(`tc filter ${replace ? "replace" : "add"} bpf block ${block}`, RTM_NEWTFILTER, flags, (w) => {
      tcmsg(w, TCM_IFINDEX_MAGIC_BLOCK, FILTER_HANDLE, block, info);
      w.attrStr(TCA_KIND, "bpf");
      const options = w.nestStart(TCA_OPTIONS);
      w.attrU32(TCA_BPF_FD, progFd)
        .attrStr(TCA_BPF_NAME, name)
        .attrU32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT);
      w.nestEnd(options);
    });
    return true;
  } catch (err) {
    if (err instanceof KernelError && err.errnoName === "EEXIST") return false;
    throw err;
  }
}

/** Removes the device's ingress qdisc (it leaves its block); false when it had none. */
export function ingressQdiscDel(sock: NetlinkSocket, ifindex: number): boolean {
  try {
    sock.ack(`tc qdisc del ingress ifindex ${ifindex}`, RTM_DELQDISC, 0, (w) => {
      tcmsg(w, ifindex, INGRESS_HANDLE, TC_H_INGRESS, 0);
    });
    return true;
  } catch (err) {
    if (err instanceof KernelError && ["ENOENT", "EINVAL"].includes(err.errnoName)) return false;
    throw err;
  }
}

/** The devices whose ingress qdisc is joined to a shared block: ifindex -> block index. One dump for all devices. */
export function ingressBlocks(sock: NetlinkSocket): Map<number, number> {
  const joined = sock.dump(
    "tc qdisc show",
    RTM_GETQDISC,
    (w) => tcmsg(w, 0, 0, 0, 0),
    (m: Message): [number, number] | undefined => {
      if (m.type !== RTM_NEWQDISC) return undefined;
      const ifindex = m.buf.readInt32LE(m.offset + 4);
      if (m.buf.readUInt32LE(m.offset + 12) !== TC_H_INGRESS) return undefined;
      const block = parseAttrs(m.buf, m.offset + TCMSG_LEN, m.end, TCA_MAX).u32(TCA_INGRESS_BLOCK);
      return block === undefined ? undefined : [ifindex, block];
    },
  );
  return new Map(joined);
}
