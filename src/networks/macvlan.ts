/**
 * macvlan: each l2 context gets a macvlan interface in bridge mode on a host device the operator names (`--parent
 * DEV`), so contexts sit on that device's segment as machines of their own (podman's and Incus's macvlan networks).
 * The gateway is a router on that segment, not the host: netctx makes nothing on the host side, no NAT, no
 * firewall parts. In bridge mode the macvlan driver switches frames between macvlans of one parent itself; like
 * every macvlan, a context cannot reach the host through the parent (the host is no address of the segment for it).
 * Anti-spoofing sits on the parent's egress, where every frame a context sends off the host passes (its own
 * device's hooks are root-inside's): the source guard (macvlan-guard.ts) lets out only a context's own MAC with its
 * own addresses, and the host's. A parent netctx uses thus carries only netctx's contexts and the host: a macvlan
 * made on it by other means cannot send. The audit, whose probes go through the host, leaves such contexts out.
 *
 * Policy (issue 19) is enforced only on an `--isolate` network, where every context's macvlan is in private mode:
 * the macvlan driver hands a frame from one macvlan straight to a sibling only when both are in bridge mode
 * (macvlan_queue_xmit, macvlan_broadcast), so a context in private mode receives only what came in through the
 * parent, past the parent's tc ingress, and sends only out through it, past the parent's tc egress. Both hooks are
 * in the host's netns (policy-datapath.ts puts the policy program there), out of reach of root inside a context:
 * a sender that switches its own macvlan to bridge mode, or sends with PACKET_QDISC_BYPASS, still cannot hand a
 * frame to a receiver in private mode (measured). In bridge mode, unicast between two contexts does pass the parent's
 * receive path (macvlan_queue_xmit hands it to the parent first), but a broadcast or multicast frame goes straight to
 * every bridge-mode sibling, and the receiver's stack takes a unicast datagram inside one (measured); and the
 * parent's ingress cannot tell a sibling's frame from the segment's, so a context posing as a machine of the segment
 * would meet its siblings under nobody's egress policy. A policy cannot be enforced there: the compiler refuses one
 * that selects such a context (policyUnenforceable), and `--default-deny` needs `--isolate` here.
 */
import { existsSync } from "node:fs";
import { invalid, NetctxError } from "../errors.ts";
import type { Host } from "../host.ts";
import { KernelError } from "../kernel/errors.ts";
import { Rtnl } from "../kernel/rtnl.ts";
import { networkSwitches } from "../model/policy.ts";
import type { NetworkRecord } from "../model/records.ts";
import { ifnameProblem } from "../net/ifname.ts";
import { type ContextSide, configureContextSide, tolerateMissing } from "./common.ts";
import { distrustRouters } from "./context-sysctls.ts";
import { declareContextSide } from "./declarations.ts";
import type { NetworkDriver } from "./driver.ts";
import {
  admitMacvlanSource,
  forgetMacvlanSource,
  type MacvlanSource,
  removeMacvlanGuard,
} from "./macvlan-guard.ts";
import { attachPortPolicy } from "./policy-datapath.ts";

function parentOf(net: NetworkRecord): string {
  const parent = net.options["parent"];
  if (typeof parent !== "string" || parent === "")
    throw invalid("parent", `a macvlan network needs --parent DEV, the host device its contexts hang off`);
  const problem = ifnameProblem(parent);
  if (problem) throw invalid("parent", problem);
  return parent;
}

/** The macvlans of the contexts on every macvlan network of `parent` (those whose netns and link are there). */
function sourcesOn(host: Host, parent: string): MacvlanSource[] {
  const networks = new Set(
    host.store
      .listNetworks()
      .filter((n) => n.driver === macvlanDriver.name && n.options["parent"] === parent)
      .map((n) => n.name),
  );
  const out: MacvlanSource[] = [];
  for (const c of host.store.listContexts()) {
    const netns = c.spec.netns;
    const atts = c.spec.attachments.filter((a) => networks.has(a.network));
    if (!netns || atts.length === 0 || !existsSync(netns)) continue;
    const rtnl = Rtnl.open(netns);
    try {
      for (const a of atts) {
        const mac = rtnl.linkGet(a.ifname)?.mac;
        if (mac) out.push({ mac, addresses: a.addresses });
      }
    } finally {
      rtnl.close();
    }
  }
  return out;
}

/** Private on an `--isolate` network: no frame between two of its contexts without the parent's hooks. */
function macvlanMode(net: NetworkRecord): "private" | "bridge" {
  return networkSwitches(net.options).isolate ? "private" : "bridge";
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
    const switches = networkSwitches(net.options);
    if (switches.defaultDeny && !switches.isolate)
      throw invalid(
        "default-deny",
        "a macvlan network needs --isolate with it: in bridge mode its contexts hand broadcast frames to each other inside the macvlan driver, where no host hook sees them",
      );
  },

  policyUnenforceable(net) {
    return networkSwitches(net.options).isolate
      ? undefined
      : "in bridge mode its contexts hand broadcast frames to each other inside the macvlan driver, where no host hook sees them, and may pose as machines of the segment to each other; only an --isolate macvlan network enforces policies";
  },

  policyDevices(net) {
    return networkSwitches(net.options).isolate ? [parentOf(net)] : [];
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

  /** Each context's macvlan went with it; the source guard goes with the parent's last macvlan network. */
  destroy(host, net) {
    const parent = parentOf(net);
    const others = host.store
      .listNetworks()
      .some((n) => n.name !== net.name && n.driver === macvlanDriver.name && n.options["parent"] === parent);
    if (!others) removeMacvlanGuard(host, parent);
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
    // Tables that select somebody hook the parent of an isolating network before the context has a link on it (the
    // hooks stay once there, as a port's do).
    if (networkSwitches(net.options).isolate) attachPortPolicy(host, parent);
    try {
      host.rtnl.linkAdd({
        name: att.ifname,
        kind: "macvlan",
        macvlan: { parent, mode: macvlanMode(net) },
        netns: ctx.path,
        mtu: att.mtu,
        ...(att.mac ? { mac: att.mac } : {}),
      });
    } catch (err) {
      if (err instanceof KernelError && err.errnoName === "ENODEV")
        throw new NetctxError("not-found", `network "${net.name}": its parent device ${parent} is gone`);
      throw err;
    }
    // Before it comes up: the parent lets out only what the context's own MAC sends from its own addresses.
    const mac = ctx.rtnl.linkGet(att.ifname)?.mac;
    if (!mac) throw new NetctxError("internal", `${att.ifname}: the macvlan just made has no MAC`);
    admitMacvlanSource(host, parent, { mac, addresses: att.addresses }, () => sourcesOn(host, parent));
    configureContextSide(host, ctx, att, contextSide(net));
  },

  /** A runtime's netns outlives the context: its macvlan is taken out of it (the CNI macvlan plugin's DEL). */
  detach(host, net, att, linkGoesWithNetns, netns) {
    forgetMacvlanSource(host, parentOf(net), att.addresses);
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
