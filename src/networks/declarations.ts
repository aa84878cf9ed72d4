/** Declarations several network drivers make alike (networks/ownership.ts says what a declaration is). */
import { attachmentPort } from "../firewall/antispoof.ts";
import type { Host } from "../host.ts";
import { Rtnl } from "../kernel/rtnl.ts";
import { bridgeIfname } from "../model/names.ts";
import type { NetworkRecord } from "../model/records.ts";
import { firewallNetwork, guardKindOf } from "./common.ts";
import type { Attachment, NetworkDriver } from "./driver.ts";
import { addressId, type Declarer } from "./ownership.ts";

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

/** The host-side link of an l2 attachment: owned, never made again (its other end lives in the context). */
export function declareHostLink(own: Declarer, att: Attachment): void {
  if (att.hostIfname) own.own("link", att.hostIfname);
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
