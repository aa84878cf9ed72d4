/**
 * The shared tc blocks of a network's ports (kernel/tc.ts): every l2 port of a bridge or routed network gets a
 * clsact qdisc whose ingress and egress filters are its network's two blocks, numbered after the network's device
 * (the bridge, or the routed network's gateway device). The blocks hold the policy filter (policy-datapath.ts) and,
 * on bridge networks, the shortcut's (bridge-shortcut.ts), so a program reaches every port by one filter add.
 * Joining costs one qdisc creation; a tcx attachment per port would wait for an RCU grace period each.
 */
import { NetctxError } from "../errors.ts";
import type { Host } from "../host.ts";
import { KernelError } from "../kernel/errors.ts";
import { networkBlocks, type PortBlocks } from "../kernel/tc.ts";
import { addShortcut, forgetShortcut, removeShortcut, type ShortcutRoute } from "./bridge-shortcut.ts";
import type { Attachment } from "./driver.ts";
import { attachPortPolicy } from "./policy-datapath.ts";

/** The blocks of the network whose device is `anchor`. */
function blocksOf(host: Host, anchor: string): PortBlocks {
  return networkBlocks(host.rtnl.linkIndex(anchor));
}

/**
 * The port (its host-side veth, still down: a qdisc added to a device that is up waits for it to quiesce) joins its
 * network's blocks, and gets the policy filters when a policy selects somebody. The bridge shortcut's filter comes
 * after (addShortcut).
 */
export function joinPortBlocks(host: Host, ifname: string, anchor: string): PortBlocks {
  const blocks = blocksOf(host, anchor);
  try {
    host.rtnl.portBlocksJoin(host.rtnl.linkIndex(ifname), blocks);
  } catch (err) {
    if (err instanceof KernelError && ["EOPNOTSUPP", "EINVAL", "ENOENT"].includes(err.errnoName))
      throw new NetctxError(
        "unsupported",
        `${ifname}: the kernel refused a clsact qdisc on shared tc blocks (needs Linux 4.16+ with sch_clsact; ${err.message.split("\n")[0]})`,
      );
    throw err;
  }
  attachPortPolicy(host, ifname, blocks);
  return blocks;
}

/**
 * Before bandwidth limits: the port leaves its blocks (its ingress is for the limits' qdisc) and takes the bridge
 * both ways. A policy in force moves to tcx programs on it first, so no frame passes unchecked in between.
 */
export function leavePortBlocks(host: Host, att: Attachment): void {
  if (!att.hostIfname) return;
  attachPortPolicy(host, att.hostIfname);
  removeShortcut(host, att);
  const ifindex = host.rtnl.linkIndexIfAny(att.hostIfname);
  if (ifindex !== undefined) host.rtnl.ingressQdiscDel(ifindex);
}

/**
 * The network's bridge was made again (gc): its ports are still joined to the blocks of the bridge that went, whose
 * shortcut would hand frames for the gateway to a device that is no more. Each port in blocks (a shaped port's
 * ingress holds its limits and stays) joins the new bridge's, with the policy filters before the shortcut. Call it
 * before the ports are put on the new bridge: until then nothing reaches them but through their old blocks' filters.
 */
export function rejoinPortBlocks(
  host: Host,
  network: string,
  anchor: string,
  attachments: readonly Attachment[],
  route?: ShortcutRoute,
): void {
  forgetShortcut(host, network);
  const joined = host.rtnl.joinedBlocks();
  const blocks = blocksOf(host, anchor);
  for (const att of attachments) {
    const ifindex = att.hostIfname && host.rtnl.linkIndexIfAny(att.hostIfname);
    const was = ifindex && joined.get(ifindex);
    if (!ifindex || !was) continue;
    if (was.ingress === blocks.ingress && was.egress === blocks.egress) continue;
    host.rtnl.ingressQdiscDel(ifindex);
    joinPortBlocks(host, att.hostIfname, anchor);
    addShortcut(host, att, route);
  }
}
