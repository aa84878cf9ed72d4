/**
 * The IPv6 routes a network namespace's kernel installed while we watched: a netlink socket in that netns joined to
 * RTNLGRP_IPV6_ROUTE. A dump shows only what is there when it is read; a route the kernel installs and removes again
 * in between (an RA default route withdrawn by a Neighbour Advertisement without the router flag, RFC 4861 7.2.5)
 * leaves its RTM_NEWROUTE here all the same.
 */
import { KernelError } from "./errors.ts";
import { NetlinkSocket } from "./netlink.ts";
import { inNetns } from "./netns.ts";
import { parseRoute, type Route } from "./route.ts";

/** RTMGRP_IPV6_ROUTE: the bit of multicast group RTNLGRP_IPV6_ROUTE (11). */
const RTMGRP_IPV6_ROUTE = 1 << (11 - 1);

export class RouteWatch {
  private readonly installed: Route[] = [];
  private lost: string | undefined;

  private constructor(private readonly sock: NetlinkSocket) {}

  /** Starts watching in the netns at `netnsPath`: routes installed from now on are collected. */
  static open(netnsPath: string): RouteWatch {
    return new RouteWatch(inNetns(netnsPath, () => NetlinkSocket.open(undefined, RTMGRP_IPV6_ROUTE)));
  }

  /**
   * Every route installed since open (RTM_NEWROUTE notifications, replaced ones included), or undefined with
   * `lostReason` set when the kernel dropped notifications (a full receive buffer): then nothing can be ruled out.
   */
  routes(): Route[] | undefined {
    if (this.lost) return undefined;
    try {
      this.sock.drainNotifications("watch IPv6 routes", (m) => {
        const r = parseRoute(m, new Map());
        if (r) this.installed.push(r);
      });
    } catch (err) {
      this.lost = err instanceof KernelError ? err.message : String(err);
      return undefined;
    }
    return this.installed;
  }

  get lostReason(): string | undefined {
    return this.lost;
  }

  close(): void {
    this.sock.close();
  }
}
