/**
 * The default underlay address: the source address the kernel picks toward the first etcd endpoint, the way
 * flannel picks its public IP from the default route's interface. Asked with `ip route get` (kernel/route.ts).
 */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { invalid } from "../errors.ts";
import { Rtnl } from "../kernel/rtnl.ts";

export async function underlayToward(endpoint: string): Promise<string> {
  const host = new URL(endpoint).hostname.replace(/^\[|\]$/g, "");
  const address = isIP(host) ? host : (await lookup(host)).address;
  const rtnl = Rtnl.open();
  try {
    const route = rtnl.routeGet(address);
    if (route?.src === undefined)
      throw invalid(
        "underlay",
        `no route to etcd at ${endpoint} to take the address from: pass --underlay ADDR`,
      );
    // etcd on this host's loopback says nothing about where peers reach us.
    if (route.dev === "lo" && (route.src.startsWith("127.") || route.src === "::1"))
      throw invalid("underlay", `etcd at ${endpoint} is reached over loopback: pass --underlay ADDR`);
    return route.src;
  } finally {
    rtnl.close();
  }
}
