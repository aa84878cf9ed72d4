/**
 * What a context has beyond its level's kernel objects: published ports (firewall/publish.ts) and bandwidth
 * limits (networks/bandwidth.ts). Applied after the level made the context, removed before its teardown.
 */
import { conflict, invalid } from "../errors.ts";
import { type PublishTarget, publishContext, unpublishContext } from "../firewall/publish.ts";
import type { Host } from "../host.ts";
import type { ContextSpec } from "../levels/driver.ts";
import { specOf } from "../levels/driver.ts";
import { levelDriver } from "../levels/registry.ts";
import { type HostPort, parseHostPorts } from "../model/host-port.ts";
import {
  type Bandwidth,
  formatPublish,
  type Published,
  parsePublish,
  publishCollides,
} from "../model/publish.ts";
import type { ContextInput } from "../model/schemas.ts";
import { limitBandwidth, unlimitBandwidth } from "../networks/bandwidth.ts";
import type { Attachment } from "../networks/driver.ts";
import { leavePortBlocks } from "../networks/port-blocks.ts";
import type { StateStore } from "../state/state-store.ts";

export interface Extras {
  publish: Published[];
  allowHostPorts: HostPort[];
  bandwidth?: Bandwidth;
}

/** Shape checks of `publish`, `allowHostPorts` and `bandwidth`; no state needed. */
export function parseExtras(input: ContextInput): Extras {
  const publish = (input.publish ?? []).map((text) => parsePublish(text, "publish"));
  const allowHostPorts = parseHostPorts(input.allowHostPorts ?? []);
  if (allowHostPorts.length && !levelDriver(input.level).sharedStack)
    throw invalid(
      "allowHostPorts",
      "only l3 and socket contexts share the host's loopback (an l2 context has its own)",
    );
  for (const [i, p] of publish.entries()) {
    const twin = publish.slice(0, i).find((q) => publishCollides(p, q));
    if (twin)
      throw invalid("publish", `${formatPublish(p)} and ${formatPublish(twin)} take the same host port`);
  }
  const b = input.bandwidth;
  if (b === undefined) return { publish, allowHostPorts };
  if (levelDriver(input.level).sharedStack)
    throw invalid("bandwidth", "only l2 contexts have a host-side link to shape");
  const bandwidth: Bandwidth = {};
  if (b.ingressRate !== undefined) bandwidth.ingressRate = b.ingressRate;
  if (b.ingressBurst !== undefined) bandwidth.ingressBurst = b.ingressBurst;
  if (b.egressRate !== undefined) bandwidth.egressRate = b.egressRate;
  if (b.egressBurst !== undefined) bandwidth.egressBurst = b.egressBurst;
  if (bandwidth.ingressRate === undefined && bandwidth.egressRate === undefined)
    return { publish, allowHostPorts };
  return { publish, allowHostPorts, bandwidth };
}

/** Inside the creating transaction: a host port another context publishes is refused before any change. */
export function checkPublishFree(store: StateStore, name: string, publish: readonly Published[]): void {
  // Reading every other record costs O(contexts) per create: only a context that publishes pays it.
  if (publish.length === 0) return;
  for (const other of store.listContexts()) {
    if (other.name === name) continue;
    for (const q of specOf(other).publish ?? []) {
      const p = publish.find((x) => publishCollides(x, q));
      if (p)
        throw conflict(
          "publish",
          `host port ${p.hostPort}/${p.protocol} is already published by context "${other.name}" (${formatPublish(q)})`,
        );
    }
  }
}

export function publishTarget(spec: ContextSpec): PublishTarget {
  const addrs = spec.attachments.flatMap((a) => a.addresses.map((c) => c.split("/")[0]!));
  const v4 = addrs.find((a) => !a.includes(":"));
  const v6 = addrs.find((a) => a.includes(":"));
  return { ...(v4 ? { v4 } : {}), ...(v6 ? { v6 } : {}) };
}

/** The attachment whose host veth carries the context's bandwidth limits (its first), when it has limits. */
export function shapedAttachment(spec: ContextSpec): (Attachment & { hostIfname: string }) | undefined {
  const first = spec.attachments[0];
  return spec.bandwidth && first?.hostIfname ? { ...first, hostIfname: first.hostIfname } : undefined;
}

export function applyExtras(host: Host, name: string, spec: ContextSpec): void {
  if (spec.publish?.length) publishContext(host, name, spec.publish, publishTarget(spec));
  const shaped = shapedAttachment(spec);
  if (shaped && spec.bandwidth) {
    // A redirect past the bridge would skip the limits' ifb and root qdisc: a shaped context takes the bridge, its
    // ingress holds the limits' qdisc, and a policy reaches it by tcx.
    leavePortBlocks(host, shaped);
    limitBandwidth(host, shaped.hostIfname, spec.bandwidth);
  }
}

/** Tolerates everything already gone (rm and CNI DEL semantics). */
export function removeExtras(host: Host, name: string, spec: ContextSpec): void {
  if (spec.publish?.length) unpublishContext(host, name, spec.publish);
  const shaped = shapedAttachment(spec);
  if (shaped) unlimitBandwidth(host, shaped.hostIfname);
}

/**
 * After a context's attachments changed (network connect, disconnect): its published ports follow its first
 * addresses of each family, its limits the host side of its first attachment. Only what moved is touched.
 */
export function moveExtras(host: Host, name: string, before: ContextSpec, after: ContextSpec): void {
  const target = publishTarget(after);
  if (after.publish?.length && JSON.stringify(publishTarget(before)) !== JSON.stringify(target))
    publishContext(host, name, after.publish, target);
  const was = shapedAttachment(before);
  const now = shapedAttachment(after);
  if (was?.hostIfname === now?.hostIfname) return;
  if (was) unlimitBandwidth(host, was.hostIfname);
  if (now && after.bandwidth) {
    leavePortBlocks(host, now);
    limitBandwidth(host, now.hostIfname, after.bandwidth);
  }
}
