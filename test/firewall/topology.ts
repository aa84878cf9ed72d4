/**
 * Test topology built with plain `ip` inside the test's throwaway host namespace:
 *   bridge br-front 10.50.0.1/24 fd50::1/64 with contexts c1 (.2/::2) and c2 (.3/::3)
 *   outside netns `out` behind veth v-out: host 10.200.0.1/24 fd00:200::1/64, out 10.200.0.2 fd00:200::2,
 *   with no route back to the contexts, so only masquerade lets replies return.
 * Optional routed contexts r1 (10.60.0.5) and r2 (10.60.0.6), each with a host-side veth and a /32 host route.
 */
import type { ChildProcess } from "node:child_process";
import { insideSandbox } from "../../src/sandbox.ts";
import { addVethNetns, HOST_NETNS, netnsPath } from "../utils/netns.ts";
import { ping as pingIn } from "../utils/ping.ts";
import { sh } from "../utils/shell.ts";
import { probeSync, startServing } from "../utils/socket-probe.ts";

function ctx(name: string, hostIfname: string, v4: string, v6: string, master: string): void {
  addVethNetns({
    name,
    hostIfname,
    master,
    addresses: [`${v4}/24`, `${v6}/64`],
    routes: ["default via 10.50.0.1", "default via fd50::1"],
  });
}

export function buildTopology(): void {
  if (!insideSandbox(process.env))
    throw new Error("kernel tests must run through npm test (throwaway namespace)");
  sh(`
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw net.ipv6.conf.all.forwarding=1
ip link add br-front type bridge
ip addr add 10.50.0.1/24 dev br-front
ip addr add fd50::1/64 dev br-front nodad
ip link set br-front up
`);
  ctx("c1", "v-c1", "10.50.0.2", "fd50::2", "br-front");
  ctx("c2", "v-c2", "10.50.0.3", "fd50::3", "br-front");
  addVethNetns({
    name: "out",
    hostIfname: "v-out",
    hostAddresses: ["10.200.0.1/24", "fd00:200::1/64"],
    addresses: ["10.200.0.2/24", "fd00:200::2/64"],
  });
}

/** Routed contexts: no bridge, each context's host-side veth carries a /32 route (like CNI ptp). */
export function buildRouted(): void {
  for (const [name, hostIfname, addr] of [
    ["r1", "v-r1", "10.60.0.5"],
    ["r2", "v-r2", "10.60.0.6"],
  ] as const)
    addVethNetns({
      name,
      hostIfname,
      hostAddresses: ["10.60.0.1/32"],
      hostRoutes: [`${addr}/32 dev ${hostIfname}`],
      addresses: [`${addr}/32`],
      routes: ["10.60.0.1/32 dev eth0", "default via 10.60.0.1"],
    });
}

/** Ping from topology namespace `ns`, or from the host with null. */
export function ping(ns: string | null, addr: string): boolean {
  return pingIn(ns ? netnsPath(ns) : HOST_NETNS, addr);
}

/** A TCP server in `ns` answering every connection with the peer address it saw, then closing. */
export async function startEcho(ns: string, port = 7777): Promise<ChildProcess> {
  return (await startServing({ op: "serve", proto: "tcp", port }, { netns: netnsPath(ns) })).child;
}

/** The peer address the echo server saw for a connection from `ns`, or null when no answer came. */
export function echoFrom(ns: string, addr: string, port = 7777): string | null {
  const [r] = probeSync({ netns: netnsPath(ns) }, [{ op: "tcp", host: addr, port, timeoutMs: 1000 }]).results;
  return r?.ok ? r.data!.replace(/^::ffff:/, "") : null;
}
