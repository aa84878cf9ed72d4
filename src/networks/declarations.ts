/** Declarations several network drivers make alike (networks/ownership.ts says what a declaration is). */
import { basename } from "node:path";
import { attachmentPort } from "../firewall/antispoof.ts";
import type { Host } from "../host.ts";
import { Rtnl } from "../kernel/rtnl.ts";
import { bridgeIfname } from "../model/names.ts";
import type { NetworkRecord } from "../model/records.ts";
import { linkLocalOf } from "../net/cidr.ts";
import {
  addDefaultRoute,
  type ContextSide,
  familyOf,
  firewallNetwork,
  guardKindOf,
  hostPrefix,
} from "./common.ts";
import type { AttachedContext, Attachment, NetworkDriver } from "./driver.ts";
import { addressId, type Declarer, insideId, insideRouteId, neighbourId } from "./ownership.ts";
import { portPolicyFix } from "./policy-datapath.ts";

/**
 * A network's device nc-NET, its gateway addresses and its firewall part. A missing device is made again by the
 * driver's create; `rejoin` then puts each attachment whose host-side link is still there back on it.
 */
export function declareNetworkDevice(
  host: Host,
  driver: NetworkDriver,
  net: NetworkRecord,
  own: Declarer,
  rejoin?: () => void,
): string {
  const device = bridgeIfname(net.name);
  own.own("link", device, {
    make: {
      action: "recreate",
      object: `network ${net.name}`,
      reason: `its device ${device} is missing`,
      run: () => {
        driver.create(host, net);
        rejoin?.();
      },
    },
  });
  for (const { cidr, opts } of driver.deviceAddresses(net))
    own.own("address", addressId(cidr, device), {
      on: device,
      make: {
        action: "add",
        object: `address ${cidr} dev ${device}`,
        reason: "its network or lease needs it",
        run: () => host.rtnl.addrAdd(device, cidr, opts),
      },
    });
  own.firewallNetwork(firewallNetwork(net));
  const guarded = guardKindOf(driver, net);
  if (guarded) own.guardsPorts(guarded);
  return device;
}

/**
 * The host-side link of an l2 attachment. A veth goes whole: its host end missing means the context's interface is
 * gone too (`ip -n NS link del eth0`), and everything on either end with it. In a netns of ours the driver's attach
 * makes the pair again, after its detach took out what outlived it (guard elements, shortcut entry, firewall
 * registration); in a runtime's netns (CNI) the link is only owned: the runtime's ADD makes it.
 */
export function declareHostLink(
  host: Host,
  driver: NetworkDriver,
  net: NetworkRecord,
  att: Attachment,
  own: Declarer,
  ctx: AttachedContext,
): void {
  if (!att.hostIfname) return;
  // While a policy selects somebody, the port holds the policy programs (policy-datapath.ts).
  const check = () => portPolicyFix(host, att.hostIfname);
  if (ctx.external || !driver.attach) {
    own.own("link", att.hostIfname, { check });
    return;
  }
  own.own("link", att.hostIfname, {
    check,
    make: {
      action: "recreate",
      object: `link ${att.hostIfname} and ${att.ifname} in netns ${basename(ctx.netns)}`,
      reason: `${own.owner}'s veth to network ${net.name} is gone`,
      run: () => reattach(host, driver, net, att, ctx.netns),
    },
  });
}

function reattach(
  host: Host,
  driver: NetworkDriver,
  net: NetworkRecord,
  att: Attachment,
  netns: string,
): void {
  driver.detach?.(host, net, att, false, netns);
  const rtnl = Rtnl.open(netns);
  try {
    driver.attach!(host, net, { path: netns, rtnl }, att);
  } finally {
    rtnl.close();
  }
}

/** Anti-spoofing of an attachment's host-side port, where its driver has it and the network did not turn it off. */
export function declareGuard(
  driver: NetworkDriver,
  net: NetworkRecord,
  att: Attachment,
  own: Declarer,
  netns: string,
): void {
  const kind = guardKindOf(driver, net);
  if (!kind || !att.hostIfname) return;
  own.guard(att.hostIfname, kind, () =>
    attachmentPort(kind, att, () => {
      // Records from before MACs were chosen at planning time: the MAC is the context's link's.
      const rtnl = Rtnl.open(netns);
      try {
        return rtnl.linkGet(att.ifname)?.mac;
      } finally {
        rtnl.close();
      }
    }),
  );
}

/**
 * What an attachment's configureContextSide made inside the context's netns, with the same options: its interface
 * (owned: a veth whose host end went with it is made again on the host side), its addresses (with nodad, as create
 * adds them), the permanent neighbour of a gateway that answers no ARP or ND, the host route to a gateway off the
 * context's prefixes and the default route through it. Nothing in a runtime's netns: that is the runtime's.
 */
export function declareContextSide(
  own: Declarer,
  att: Attachment,
  ctx: AttachedContext,
  side: ContextSide,
): void {
  if (ctx.external) return;
  const ns = basename(ctx.netns);
  const where = `in netns ${ns}`;
  const link = insideId(ns, att.ifname);
  const inside = (run: (rtnl: Rtnl) => void) => () => {
    const rtnl = Rtnl.open(ctx.netns);
    try {
      run(rtnl);
    } finally {
      rtnl.close();
    }
  };
  const reason = `${own.owner} has it from network ${att.network}`;
  own.own("link", link);
  const addresses = [...att.addresses];
  if (att.mac && att.addresses.some((a) => familyOf(a) === 6)) addresses.push(`${linkLocalOf(att.mac)}/64`);
  for (const cidr of addresses)
    own.own("address", insideId(ns, addressId(cidr, att.ifname)), {
      on: link,
      make: {
        action: "add",
        object: `address ${cidr} dev ${att.ifname} ${where}`,
        reason,
        run: inside((rtnl) => rtnl.addrAdd(att.ifname, cidr, { nodad: familyOf(cidr) === 6 })),
      },
    });
  for (const gateway of att.gateways) {
    const family = familyOf(gateway);
    if (side.gatewayMac) {
      const mac = side.gatewayMac;
      own.own("neighbour", insideId(ns, neighbourId(gateway, mac, att.ifname)), {
        on: link,
        make: {
          action: "add",
          object: `neighbour ${gateway} lladdr ${mac} dev ${att.ifname} ${where}`,
          reason,
          run: inside((rtnl) =>
            rtnl.neighReplace({ ifname: att.ifname, ip: gateway, mac, state: "permanent" }),
          ),
        },
      });
    }
    if (side.gatewayOnLink) {
      const dst = hostPrefix(gateway);
      own.own("route", insideId(ns, insideRouteId(family, dst, att.ifname)), {
        on: link,
        make: {
          action: "add",
          object: `route ${dst} dev ${att.ifname} scope link ${where}`,
          reason,
          run: inside((rtnl) => rtnl.routeAdd({ dst, dev: att.ifname, scope: "link" })),
        },
      });
    }
    if (side.defaultRoute)
      own.own("route", insideId(ns, insideRouteId(family, "default", att.ifname)), {
        on: link,
        make: {
          action: "add",
          object: `route default via ${gateway} dev ${att.ifname} ${where}`,
          reason,
          run: inside((rtnl) => addDefaultRoute(rtnl, gateway, att.ifname)),
        },
      });
  }
}
