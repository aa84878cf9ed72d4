/**
 * macvlan: each l2 context gets a macvlan interface in bridge mode on a host device the operator names (`--parent
 * DEV`), so contexts sit on that device's segment as machines of their own (podman's and Incus's macvlan networks).
 * The gateway is a router on that segment, not the host: netctx makes nothing on the host side, no NAT, no
 * firewall parts. In bridge mode the kernel switches frames between macvlans of one parent itself; like every
 * macvlan, a context cannot reach the host through the parent (the host is no address of the segment for it).
 * There is no anti-spoofing (no hook sees a macvlan's frames before the parent sends them), and the audit, whose
 * probes go through the host, leaves such contexts out.
 */
import { invalid, NetctxError } from "../errors.ts";
import { KernelError } from "../kernel/errors.ts";
import { Rtnl } from "../kernel/rtnl.ts";
import type { NetworkRecord } from "../model/records.ts";
import { ifnameProblem } from "../net/ifname.ts";
import { type ContextSide, configureContextSide, tolerateMissing } from "./common.ts";
import { distrustRouters } from "./context-sysctls.ts";
import { declareContextSide } from "./declarations.ts";
import type { NetworkDriver } from "./driver.ts";

function parentOf(net: NetworkRecord): string {
  const parent = net.options["parent"];
  if (typeof parent !== "string" || parent === "")
    throw invalid("parent", `a macvlan network needs --parent DEV, the host device its contexts hang off`);
  const problem = ifnameProblem(parent);
  if (problem) throw invalid("parent", problem);
  return parent;
}

/** The context's side: the gateway is a router on the parent's segment, on the context's prefix. */
function contextSide(net: NetworkRecord): ContextSide {
  return { gatewayOnLink: false, defaultRoute: !net.internal };
}

export const macvlanDriver: NetworkDriver = {
  name: "macvlan",
  levels: ["l2"],
  options: { parent: "the host device its contexts hang off (--parent)" },
  sharedSegment: true,

  validate(net) {
    parentOf(net);
    if (net.nat)
      throw invalid(
        "nat",
        "a macvlan network leaves through its gateway on the parent's segment: the host does not NAT it",
      );
  },

  /** Nothing to make: the parent must be there, with room for the network's MTU. */
  create(host, net) {
    const parent = parentOf(net);
    const link = host.rtnl.linkGet(parent);
    if (!link) throw invalid("parent", `device ${parent} does not exist`);
    if (net.mtu > link.mtu)
      throw invalid(
        "mtu",
        `${net.mtu} is more than the MTU of ${parent} (${link.mtu}); a macvlan cannot exceed its parent's`,
      );
  },

  deviceAddresses() {
    return [];
  },

  destroy() {
    // Nothing on the host: each context's macvlan goes with it.
  },

  contextAddress(lease) {
    return `${lease.address}/${lease.prefix}`;
  },

  hostDevice() {
    return undefined;
  },

  hostInterfaces() {
    return [];
  },

  declare() {
    // The host holds nothing of a macvlan network; its contexts' interfaces live in their netns.
  },

  /** Only the context's side: its macvlan, addresses and routes. */
  declareAttachment(_host, net, att, own, ctx) {
    declareContextSide(own, att, ctx, contextSide(net));
  },

  attach(host, net, ctx, att) {
    // Before the context's interface exists: it copies the netns's conf/default when it is made.
    distrustRouters(ctx);
    const parent = parentOf(net);
    try {
      host.rtnl.linkAdd({
        name: att.ifname,
        kind: "macvlan",
        macvlan: { parent, mode: "bridge" },
        netns: ctx.path,
        mtu: att.mtu,
        ...(att.mac ? { mac: att.mac } : {}),
      });
    } catch (err) {
      if (err instanceof KernelError && err.errnoName === "ENODEV")
        throw new NetctxError("not-found", `network "${net.name}": its parent device ${parent} is gone`);
      throw err;
    }
    configureContextSide(host, ctx, att, contextSide(net));
  },

  /** A runtime's netns outlives the context: its macvlan is taken out of it (the CNI macvlan plugin's DEL). */
  detach(_host, _net, att, linkGoesWithNetns, netns) {
    if (linkGoesWithNetns || !netns) return;
    let rtnl: Rtnl;
    try {
      rtnl = Rtnl.open(netns);
    } catch {
      return; // the runtime removed its netns first: the macvlan went with it
    }
    try {
      tolerateMissing(() => rtnl.linkDel(att.ifname));
    } finally {
      rtnl.close();
    }
  },
};
