/**
 * Per-context firewall interfaces (a routed network registers each context's host-side veth): registration at
 * once, removal queued. Deleting set elements costs the kernel a grace period per transaction (~10 ms here), so
 * removals wait (host.defer) and leave together, as anti-spoofing elements do. Waiting is safe: the elements name
 * an interface that is gone, and a new veth of that name takes them out in its own registration.
 */
import { type Host, removalQueue } from "../host.ts";
import type { FirewallNetwork } from "./firewall.ts";

const leaving = removalQueue<{ network: FirewallNetwork; ifname: string }>((host, batch) =>
  host.firewall((fw) => fw.removeInterfacesOf(batch)),
);

export function registerInterface(host: Host, network: FirewallNetwork, ifname: string): void {
  const previous = leaving.take(host, ifname);
  host.firewall((fw) => fw.addInterfaceOf(network, ifname, previous?.network));
}

export function unregisterInterface(host: Host, network: FirewallNetwork, ifname: string): void {
  leaving.put(host, ifname, { network, ifname });
}
