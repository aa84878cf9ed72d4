/**
 * l2 (OpenVZ veth): the context is its own network namespace with its own devices, routes, neighbours,
 * sysctls and firewall; it reaches its networks through veth (or macvlan) links.
 */

import { existsSync } from "node:fs";
import { basename } from "node:path";
import { NetctxError, notFound } from "../errors.ts";
import type { Host } from "../host.ts";
import { createNetns, deleteNetns } from "../kernel/netns.ts";
import { Rtnl } from "../kernel/rtnl.ts";
import type { Attachment } from "../model/attachment.ts";
import { contextNetnsName } from "../model/names.ts";
import { addDefaultRoute, deleteOwnLink } from "../networks/common.ts";
import type { ContextNetns } from "../networks/driver.ts";
import { networkDriver } from "../networks/registry.ts";
import type { ContextSpec, LevelDriver } from "./driver.ts";
import { BASE_CAPABILITIES, specOf } from "./driver.ts";
import { releaseNetnsCounters } from "./netns-counter-files.ts";
import { refuseWhileRunning } from "./processes.ts";

export const l2Level: LevelDriver = {
  level: "l2",
  sharedStack: false,
  ownTable: false,

  create(host: Host, name: string, spec: ContextSpec) {
    // An external netns (a container runtime's) already exists and stays the runtime's to delete. Ours is owned by
    // a user namespace of its own: root inside manages this stack and no other (kernel/netns-owned.c).
    const path = spec.netnsExternal && spec.netns ? spec.netns : createNetns(contextNetnsName(name), "own");
    host.pause("create:after-netns");
    const rtnl = Rtnl.open(path);
    try {
      // A netns holds no mark of its own: its loopback's alias says which store made it (model/store-mark.ts).
      rtnl.linkSet("lo", spec.netnsExternal ? { up: true } : { up: true, alias: host.linkMark.alias });
      for (const att of spec.attachments) attach(host, { path, rtnl }, att, "create:after-attach");
    } finally {
      rtnl.close();
    }
  },

  /** One more network for a running context: the same attach as create's, undone through detach if it fails. */
  connect(host: Host, _name: string, spec: ContextSpec, att: Attachment) {
    const path = spec.netns;
    if (!path) throw new NetctxError("internal", "an l2 context without a netns");
    const rtnl = Rtnl.open(path);
    try {
      attach(host, { path, rtnl }, att, "connect:after-attach");
    } catch (err) {
      try {
        detach(host, att, path);
      } catch {
        // gc removes what this left (the link is no record's); the attach's error is the one to report
      }
      throw err;
    } finally {
      rtnl.close();
    }
  },

  /**
   * Take one network's link out of a context that keeps others. A default route that went with it is put back
   * through the networks left, as create would have made it had they come first.
   */
  disconnect(host: Host, _name: string, spec: ContextSpec, att: Attachment) {
    const path = spec.netns;
    if (!path) throw new NetctxError("internal", "an l2 context without a netns");
    detach(host, att, path);
    if (!existsSync(path)) return;
    const rtnl = Rtnl.open(path);
    try {
      for (const other of spec.attachments) {
        if (other.network === att.network) continue;
        if (host.store.getNetwork(other.network)?.internal !== false) continue;
        for (const gateway of other.gateways) addDefaultRoute(rtnl, gateway, other.ifname);
      }
    } finally {
      rtnl.close();
    }
  },

  teardown(host: Host, name: string, spec: ContextSpec) {
    // rm checked before it marked the record; this is the net behind it (an exec that entered in between).
    // Unmounting the netns would not end its processes, only leave them in a namespace nothing can reach.
    refuseWhileRunning(name, spec);
    // The engine's open counter files would keep the netns, and the links going with it, alive.
    releaseNetnsCounters(host, spec.netns);
    const linksGoWithNetns = spec.netnsExternal !== true;
    for (const att of spec.attachments) {
      if (linksGoWithNetns) detachLeavingLink(host, att, spec.netns);
      else detach(host, att, spec.netns);
    }
    if (linksGoWithNetns) deleteNetns(contextNetnsName(name));
  },

  // Its own stack is its to manage: addresses, routes, raw and packet sockets, its own users. Its abstract unix
  // namespace is its netns's own.
  anchorMissing(record) {
    const netns = specOf(record).netns;
    return netns && !existsSync(netns) ? `its netns ${netns} is gone` : undefined;
  },

  /** Its netns (a runtime's is not ours to list) and, through each network's driver, what its links own. */
  declare(host, record, own, where) {
    const spec = specOf(record);
    if (!spec.netns) return;
    own.own("netns", basename(spec.netns));
    for (const att of spec.attachments) {
      const net = where.networks.get(att.network);
      if (!net) continue;
      networkDriver(net.driver).declareAttachment?.(host, net, att, own, {
        netns: spec.netns,
        shapedIfname: where.shapedIfname,
        external: spec.netnsExternal === true,
      });
    }
  },

  execSandbox(record) {
    return {
      netns: specOf(record).netns!,
      keepCaps: [...BASE_CAPABILITIES, "net_admin", "net_raw", "net_broadcast", "setuid", "setgid"],
      families: ["unix", "inet", "inet6", "netlink", "packet"],
      scopeAbstractUnix: false,
    };
  },
};

/** Link the context into one network through its driver (create, connect: each stops at its own pause point). */
function attach(host: Host, ctx: ContextNetns, att: Attachment, pauseStep: string): void {
  const net = host.store.getNetwork(att.network);
  if (!net) throw notFound("network", att.network);
  const driver = networkDriver(net.driver);
  if (!driver.attach) throw new Error(`driver ${driver.name} cannot attach l2 contexts`);
  driver.attach(host, net, ctx, att);
  host.pause(pauseStep);
}

/** Undo attach, the link included (its netns stays); tolerates what is gone already. */
function detach(host: Host, att: Attachment, netns: string | undefined): void {
  const net = host.store.getNetwork(att.network);
  if (net) networkDriver(net.driver).detach?.(host, net, att, false, netns);
  else if (att.hostIfname) deleteOwnLink(host, att.hostIfname);
}

/** Undo attach but for the link, which goes with the netns about to be deleted. */
function detachLeavingLink(host: Host, att: Attachment, netns: string | undefined): void {
  const net = host.store.getNetwork(att.network);
  if (net) networkDriver(net.driver).detach?.(host, net, att, true, netns);
}
