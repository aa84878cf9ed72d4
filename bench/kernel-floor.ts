/**
 * The kernel's own cost of what an l2 context on a bridge network is made of, with netctx's engine out of the way
 * (no state, IPAM, addresses, routes or firewall): a network namespace and a veth whose host side joins a bridge,
 * both ends without an IPv6 link-local address and up, through the same netlink calls netctx makes, and a bridge
 * made as netctx makes its own (multicast snooping off). Teardown deletes the namespace. Walked like the netctx
 * paths (k at a population of N), so the growth from N=100 to N=1000 shows what the kernel adds per context as
 * the bridge fills, next to what netctx adds on top of it.
 */
import { createNetns, deleteNetns } from "../src/kernel/netns.ts";
import { Rtnl } from "../src/kernel/rtnl.ts";
import type { Path } from "./population.ts";
import { nowMs } from "./stats.ts";

export const KERNEL_FLOOR = "kernel floor: netns + veth into a bridge, no engine";

const BRIDGE = "ncfloor";

/** A Path over bare netlink calls; `close()` removes the bridge once the walk is done. */
export function kernelFloorPath(): Path & { close(): void } {
  const rtnl = Rtnl.open();
  rtnl.linkAdd({ name: BRIDGE, kind: "bridge", up: true, bridge: { multicastSnooping: false } });
  const add = (i: number) => {
    const netns = createNetns(`ncf${i}`);
    rtnl.linkAdd({ name: `ncf${i}`, kind: "veth", master: BRIDGE, peer: { name: "eth0", netns } });
    rtnl.linkSet(`ncf${i}`, { ipv6LinkLocal: false });
    rtnl.linkSet(`ncf${i}`, { up: true });
    const inside = Rtnl.open(netns);
    try {
      inside.linkSet("eth0", { ipv6LinkLocal: false });
      inside.linkSet("eth0", { up: true });
    } finally {
      inside.close();
    }
  };
  return {
    label: KERNEL_FLOOR,
    rounds: 5,
    add,
    // Timed as a whole, as the apply path is: k contexts' wall time in equal shares.
    addMany: (indices) => {
      const t = nowMs();
      for (const i of indices) add(i);
      const share = (nowMs() - t) / indices.length;
      return indices.map(() => share);
    },
    remove: (i) => deleteNetns(`ncf${i}`),
    close: () => {
      rtnl.linkDel(BRIDGE);
      rtnl.close();
    },
  };
}
