/**
 * The kernel's own cost of what an l2 context on a bridge network is made of, with netctx's engine out of the way
 * (no state, IPAM, addresses, routes or firewall): a network namespace and a veth whose host side joins a bridge,
 * both ends without an IPv6 link-local address and up, through the same netlink calls netctx makes, and a bridge
 * made as netctx makes its own (multicast snooping off), all on that one bridge. Teardown deletes the namespace.
 * Walked like the netctx paths (k at a population of N), so the growth from N=100 to N=1000 shows what the kernel
 * adds per context as one bridge fills (what netctx's segment bridges avoid).
 */
import { createNetns, deleteNetns } from "../src/kernel/netns.ts";
import { Rtnl } from "../src/kernel/rtnl.ts";
import type { Path } from "./population.ts";
import { nowMs } from "./stats.ts";

export const KERNEL_FLOOR = "kernel floor: netns + veth into a bridge, no engine";

const BRIDGE = "ncfloor";

/** A bridge takes at most 1024 ports (BR_MAX_PORTS). */
const BRIDGE_PORTS = 1024;

/**
 * Waits, untimed, until the bridge has room for `count` more ports: a removed namespace takes its veth, and so its
 * port, with it only in the kernel's namespace cleanup (a worker, behind every namespace the walks before removed),
 * so at N=1000 the next round's adds could find the ports of the last round's removals still taken (EXFULL).
 */
function waitForPorts(rtnl: Rtnl, bridge: number, count: number): void {
  const deadline = Date.now() + 30_000;
  while (rtnl.linkPortCount(bridge) + count > BRIDGE_PORTS && Date.now() < deadline)
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
}

/** A Path over bare netlink calls; `close()` removes the bridge once the walk is done. */
export function kernelFloorPath(): Path & { close(): void } {
  const rtnl = Rtnl.open();
  rtnl.linkAdd({ name: BRIDGE, kind: "bridge", up: true, bridge: { multicastSnooping: false } });
  const bridge = rtnl.linkIndex(BRIDGE);
  // A removed namespace takes its veth with it a moment later (the kernel's netns cleanup), as netctx's rm does:
  // each context gets a fresh name, so a repeated round never meets a veth still on its way out.
  const names = new Map<number, string>();
  let made = 0;
  const add = (i: number) => {
    const name = `ncf${made++}`;
    const netns = createNetns(name);
    names.set(i, name);
    rtnl.linkAdd({ name, kind: "veth", master: BRIDGE, peer: { name: "eth0", netns } });
    rtnl.linkSet(name, { ipv6LinkLocal: false });
    rtnl.linkSet(name, { up: true });
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
    add: (i) => {
      waitForPorts(rtnl, bridge, 1);
      add(i);
    },
    // Timed as a whole, as the apply path is: k contexts' wall time in equal shares.
    addMany: (indices) => {
      waitForPorts(rtnl, bridge, indices.length);
      const t = nowMs();
      for (const i of indices) add(i);
      const share = (nowMs() - t) / indices.length;
      return indices.map(() => share);
    },
    remove: (i) => {
      const name = names.get(i);
      if (name === undefined) return;
      names.delete(i);
      deleteNetns(name);
    },
    close: () => {
      rtnl.linkDel(BRIDGE);
      rtnl.close();
    },
  };
}
