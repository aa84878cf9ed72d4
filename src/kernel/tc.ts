/**
 * tc through rtnetlink, for one job: BPF programs on many devices through shared filter blocks. Each port of a
 * network gets a `clsact` qdisc whose ingress filters are those of the network's shared ingress block
 * (TCA_INGRESS_BLOCK) and whose egress filters are those of its shared egress block (TCA_EGRESS_BLOCK); the blocks
 * hold direct-action cls_bpf filters, run in the order of their preference (BLOCK_PREF). Both choices are about cost
 * as devices pile up:
 *  - tcx (BPF_PROG_ATTACH by ifindex) waits for an RCU grace period on every attach and detach (~17 ms here);
 *  - a qdisc with a block of its own registers that block in the kernel's global list of offload candidates, which
 *    every later bind and unbind walks (flow_indr_dev_setup_offload: 0.24 ms a device at 1000 devices). A shared
 *    block is one entry however many devices join it, and a filter added to it reaches every port at once.
 * A block lives as long as a device is joined to it, its filters with it.
 */
import { KernelError } from "./errors.ts";
import {
  AF_UNSPEC,
  type Message,
  type MessageWriter,
  type NetlinkSocket,
  NLM_F_CREATE,
  NLM_F_ECHO,
  NLM_F_EXCL,
  parseAttrs,
} from "./netlink.ts";

const RTM_NEWQDISC = 36;
const RTM_DELQDISC = 37;
const RTM_GETQDISC = 38;
const RTM_NEWTFILTER = 44;
const RTM_DELTFILTER = 45;
const RTM_GETTFILTER = 46;
const TCA_KIND = 1;
const TCA_OPTIONS = 2;
const TCA_INGRESS_BLOCK = 13;
const TCA_EGRESS_BLOCK = 14;
const TCA_MAX = 16;
const TCMSG_LEN = 20;
const TCA_BPF_FD = 6;
const TCA_BPF_NAME = 7;
const TCA_BPF_FLAGS = 8;
const TCA_BPF_MAX = 14;
const TCA_BPF_FLAG_ACT_DIRECT = 1;
/** TC_H_CLSACT and TC_H_INGRESS are the same parent: clsact (and the older ingress) sit there. */
const TC_H_INGRESS = 0xfffffff1;
/** TC_H_MAKE(TC_H_INGRESS, 0): the clsact/ingress qdisc's handle (ffff:). */
const INGRESS_HANDLE = 0xffff0000;
/** tcm_ifindex of a request addressed to a shared block (tcm_parent then holds the block index). */
const TCM_IFINDEX_MAGIC_BLOCK = 0xffffffff;
const ETH_P_ALL = 0x0003;
const FILTER_HANDLE = 1;

/**
 * Where each program of ours sits in a block: a lower preference runs first. The policy decides before the bridge
 * shortcut, whose bpf_redirect_peer / gateway redirect would otherwise carry a denied frame past it; a filter that
 * lets a frame on returns TC_ACT_UNSPEC (-1) so the next one runs.
 */
export const BLOCK_PREF = { policy: 1, shortcut: 10 } as const;

/** The shared blocks a network's ports join: numbered after a device of the network that lives as long as it. */
export interface PortBlocks {
  ingress: number;
  egress: number;
}

/** Block indexes are u32 and ifindexes below 2^31: the egress block takes the index with the top bit set. */
export function networkBlocks(anchorIfindex: number): PortBlocks {
  return { ingress: anchorIfindex, egress: (anchorIfindex | 0x80000000) >>> 0 };
}

function tcmsg(w: MessageWriter, ifindex: number, handle: number, parent: number, info: number): void {
  w.u8(AF_UNSPEC).u8(0).u16(0).u32(ifindex).u32(handle).u32(parent).u32(info);
}

/** tcm_info of a filter: its preference in the upper 16 bits, the protocol (all) in network byte order in the lower. */
function filterInfo(pref: number): number {
  return ((pref << 16) | ((ETH_P_ALL & 0xff) << 8) | (ETH_P_ALL >> 8)) >>> 0;
}

/** A clsact qdisc on the device, its filters those of the shared blocks (each made if it does not exist). */
export function portBlocksJoin(sock: NetlinkSocket, ifindex: number, blocks: PortBlocks): void {
  sock.ack(
    `tc qdisc add clsact ingress_block ${blocks.ingress} egress_block ${blocks.egress} ifindex ${ifindex}`,
    RTM_NEWQDISC,
    NLM_F_CREATE | NLM_F_EXCL,
    (w) => {
      tcmsg(w, ifindex, INGRESS_HANDLE, TC_H_INGRESS, 0);
      w.attrStr(TCA_KIND, "clsact");
      w.attrU32(TCA_INGRESS_BLOCK, blocks.ingress);
      w.attrU32(TCA_EGRESS_BLOCK, blocks.egress);
    },
  );
}

/**
 * The program as a filter of the block at preference `pref` (protocol all, direct action); false when the block
 * has a filter there already (one handle per preference, so a second writer gets EEXIST). With `replace`, a filter
 * already there gets this program instead (cls_bpf swaps it in one step: no frame meets the block without one).
 */
export function blockProgramAdd(
  sock: NetlinkSocket,
  block: number,
  pref: number,
  progFd: number,
  name: string,
  replace = false,
): boolean {
  const info = filterInfo(pref);
  const flags = replace ? NLM_F_CREATE : NLM_F_CREATE | NLM_F_EXCL;
  try {
    sock.ack(
      `tc filter ${replace ? "replace" : "add"} bpf block ${block} pref ${pref}`,
      RTM_NEWTFILTER,
      flags,
      (w) => {
        tcmsg(w, TCM_IFINDEX_MAGIC_BLOCK, FILTER_HANDLE, block, info);
        w.attrStr(TCA_KIND, "bpf");
        const options = w.nestStart(TCA_OPTIONS);
        w.attrU32(TCA_BPF_FD, progFd)
          .attrStr(TCA_BPF_NAME, name)
          .attrU32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT);
        w.nestEnd(options);
      },
    );
    return true;
  } catch (err) {
    if (err instanceof KernelError && err.errnoName === "EEXIST") return false;
    throw err;
  }
}

/** Removes the filter at preference `pref` of the block; false when there was none (or no block). */
export function blockFilterDel(sock: NetlinkSocket, block: number, pref: number): boolean {
  const info = filterInfo(pref);
  try {
    sock.ack(`tc filter del block ${block} pref ${pref}`, RTM_DELTFILTER, 0, (w) => {
      tcmsg(w, TCM_IFINDEX_MAGIC_BLOCK, 0, block, info);
    });
    return true;
  } catch (err) {
    if (err instanceof KernelError && ["ENOENT", "EINVAL"].includes(err.errnoName)) return false;
    throw err;
  }
}

export interface BlockFilter {
  pref: number;
  kind: string;
  /** cls_bpf's name of its program (what TCA_BPF_NAME gave), "" for other kinds. */
  name: string;
}

/** The filters of a shared block; empty when there is no such block (no device joined to it). */
export function blockFilters(sock: NetlinkSocket, block: number): BlockFilter[] {
  try {
    return sock.dump(
      `tc filter show block ${block}`,
      RTM_GETTFILTER,
      (w) => tcmsg(w, TCM_IFINDEX_MAGIC_BLOCK, 0, block, 0),
      (m: Message): BlockFilter | undefined => {
        if (m.type !== RTM_NEWTFILTER) return undefined;
        // A filter's first message (handle 0) names its kind only; the one with the handle has its options.
        if (m.buf.readUInt32LE(m.offset + 8) === 0) return undefined;
        const attrs = parseAttrs(m.buf, m.offset + TCMSG_LEN, m.end, TCA_MAX);
        const kind = attrs.str(TCA_KIND) ?? "";
        const name = kind === "bpf" ? (attrs.nested(TCA_OPTIONS, TCA_BPF_MAX)?.str(TCA_BPF_NAME) ?? "") : "";
        return { pref: m.buf.readUInt32LE(m.offset + 16) >>> 16, kind, name };
      },
    );
  } catch (err) {
    if (err instanceof KernelError && err.errnoName === "EINVAL") return [];
    throw err;
  }
}

/** Removes the device's clsact (or ingress) qdisc, and with it its share of any block; false when it had none. */
export function ingressQdiscDel(sock: NetlinkSocket, ifindex: number): boolean {
  try {
    sock.ack(`tc qdisc del clsact ifindex ${ifindex}`, RTM_DELQDISC, 0, (w) => {
      tcmsg(w, ifindex, INGRESS_HANDLE, TC_H_INGRESS, 0);
    });
    return true;
  } catch (err) {
    if (err instanceof KernelError && ["ENOENT", "EINVAL"].includes(err.errnoName)) return false;
    throw err;
  }
}

/** The blocks a device's clsact/ingress qdisc is joined to (egress undefined: an ingress qdisc, or none). */
export interface JoinedBlocks {
  ingress: number;
  egress: number | undefined;
}

function parseJoined(m: Message): [number, JoinedBlocks] | undefined {
  if (m.type !== RTM_NEWQDISC) return undefined;
  const ifindex = m.buf.readInt32LE(m.offset + 4);
  if (m.buf.readUInt32LE(m.offset + 12) !== TC_H_INGRESS) return undefined;
  const attrs = parseAttrs(m.buf, m.offset + TCMSG_LEN, m.end, TCA_MAX);
  const ingress = attrs.u32(TCA_INGRESS_BLOCK);
  return ingress === undefined ? undefined : [ifindex, { ingress, egress: attrs.u32(TCA_EGRESS_BLOCK) }];
}

/** The devices whose clsact/ingress qdisc is joined to shared blocks: ifindex -> blocks. One dump for all devices. */
export function joinedBlocks(sock: NetlinkSocket): Map<number, JoinedBlocks> {
  return new Map(sock.dump("tc qdisc show", RTM_GETQDISC, (w) => tcmsg(w, 0, 0, 0, 0), parseJoined));
}

/** The blocks of one device's clsact/ingress qdisc, undefined when it has none joined to a block. */
export function deviceBlocks(sock: NetlinkSocket, ifindex: number): JoinedBlocks | undefined {
  let found: JoinedBlocks | undefined;
  try {
    sock.ack(
      `tc qdisc show ingress ifindex ${ifindex}`,
      RTM_GETQDISC,
      // Some kernels answer a qdisc get only as a notification, which NLM_F_ECHO sends back to the asker.
      NLM_F_ECHO,
      (w) => tcmsg(w, ifindex, INGRESS_HANDLE, TC_H_INGRESS, 0),
      (m) => {
        found = parseJoined(m)?.[1] ?? found;
      },
    );
  } catch (err) {
    if (err instanceof KernelError && ["ENOENT", "EINVAL", "ENODEV"].includes(err.errnoName))
      return undefined;
    throw err;
  }
  return found;
}
