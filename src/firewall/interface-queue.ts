/**
 * Per-context firewall interfaces (a routed network registers each context's host-side veth): registration at
 * once, removal queued. Deleting set elements costs the kernel a grace period per transaction (~10 ms here), so
 * removals wait (host.defer) and leave together, as anti-spoofing elements do. Waiting is safe: the elements name
 * an interface that is gone, and a new veth of that name takes them out in its own registration.
 */
import { type Host, perHost } from "../host.ts";
import type { FirewallNetwork } from "./firewall.ts";

/** At most this many removed interfaces wait for their elements to be dropped. */
const BATCH = 64;

const leaving = perHost(() => new Map<string, FirewallNetwork>());

export function registerInterface(host: Host, network: FirewallNetwork, ifname: string): void {
  const queue = leaving(host);
  const previous = queue.get(ifname);
  queue.delete(ifname);
  host.firewall((fw) => fw.addInterfaceOf(network, ifname, previous));
}

export function unregisterInterface(host: Host, network: FirewallNetwork, ifname: string): void {
  const queue = leaving(host);
  queue.set(ifname, network);
  if (queue.size >= BATCH) dropLeaving(host);
  else host.defer(dropLeaving);
}

function dropLeaving(host: Host): void {
  const queue = leaving(host);
  if (queue.size === 0) return;
  const batch = [...queue].map(([ifname, network]) => ({ network, ifname }));
  queue.clear();
  host.firewall((fw) => fw.removeInterfacesOf(batch));
}
