/**
 * A context's netns trusts no router it was not given (issue 15): accept_ra=0 and accept_redirects=0, IPv4 and IPv6.
 * At the kernel's defaults (1), root in a neighbouring context becomes this context's default router with one Router
 * Advertisement (Docker's CVE-2020-13401), or moves its routes with a redirect. The bridge drops such messages from
 * context ports (firewall/antispoof.ts); these settings are the second line, for one that reaches a context from
 * elsewhere. netctx networks advertise nothing, so no context needs RAs; a network that advertised would keep them.
 *
 * conf/default, written before the context's interface exists: an interface copies conf/default when it is made,
 * and IPv6 has no netlink attribute to set its own (the kernel takes only the address generation mode and the token
 * in IFLA_AF_SPEC). IPv4 also reads conf/all: a host that does not forward takes a redirect when conf/all OR the
 * interface accepts it. Through kernel/netns-sysctl.ts, whose cost does not grow with the number of namespaces
 * (/proc/sys's does: ~0.6 ms a context at 1000). With accept_ra off, a new interface on a network with IPv6 also
 * sends no Router Solicitations (with it on, the kernel sends them as soon as the link-local address is ready, and
 * again with backoff), which the bridge floods to every port.
 */
import type { KernelError } from "../kernel/errors.ts";
import { writeNetnsSysctls } from "../kernel/netns-sysctl.ts";
import type { ContextNetns } from "./driver.ts";

const NO_ROUTER_TRUST = [
  ["net/ipv6/conf/default/accept_ra", "0"],
  ["net/ipv6/conf/default/accept_redirects", "0"],
  ["net/ipv4/conf/default/accept_redirects", "0"],
  ["net/ipv4/conf/all/accept_redirects", "0"],
] as const;

/** Namespaces already set, per create (one socket per netns and create): a second network costs nothing. */
const done = new WeakSet<ContextNetns["rtnl"]>();

/** Before the first interface is made in the context's netns. */
export function distrustRouters(ctx: ContextNetns): void {
  if (done.has(ctx.rtnl)) return;
  // A kernel without IPv6 (ipv6.disable=1) has no net/ipv6: nothing there to distrust.
  const noIpv6 = (key: string, err: KernelError) => key.startsWith("net/ipv6/") && err.errnoName === "ENOENT";
  writeNetnsSysctls(ctx.path, NO_ROUTER_TRUST, noIpv6);
  done.add(ctx.rtnl);
}
