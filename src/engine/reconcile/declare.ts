/**
 * Walk the records and let each one's drivers declare what it owns (networks/ownership.ts). The walker knows no
 * driver and no level: it only says which records are settled, which attachments hang off which network, and what a
 * context has beyond its level (published ports, bandwidth limits).
 */
import type { Host } from "../../host.ts";
import { specOf } from "../../levels/driver.ts";
import { levelDriver } from "../../levels/registry.ts";
import type { ContextRecord, NetworkRecord } from "../../model/records.ts";
import { ifbName } from "../../networks/bandwidth.ts";
import type { Attachment } from "../../networks/driver.ts";
import { type Declarer, Ownership } from "../../networks/ownership.ts";
import { networkDriver } from "../../networks/registry.ts";
import { publishTarget, shapedAttachment } from "../context-extras.ts";

export function declareAll(host: Host, networks: NetworkRecord[], contexts: ContextRecord[]): Ownership {
  const own = new Ownership();
  const byName = new Map(networks.map((n) => [n.name, n]));
  // Host-side links hanging off each network (the l2 contexts'), for a device that has to be made again.
  const hanging = new Map<string, Attachment[]>();
  for (const c of contexts)
    for (const att of specOf(c).attachments)
      if (att.hostIfname) hanging.set(att.network, [...(hanging.get(att.network) ?? []), att]);
  for (const n of networks) {
    // A network whose rm is under way keeps no firewall elements: its remover is deleting them.
    const declarer = own.of(`network ${n.name}`, n.op === undefined, n.op?.op !== "remove");
    networkDriver(n.driver).declare(host, n, declarer, hanging.get(n.name) ?? []);
  }
  for (const c of contexts) {
    const level = levelDriver(c.level);
    // A context whose anchor is gone is about to be dropped: it owns what it has, and nothing is made for it.
    // One a network connect is changing owns what it has: its new link is the connect's (or gc's rollback's) to make.
    const settled = c.status === "ready" && c.op?.op !== "connect" && level.anchorMissing(c) === undefined;
    const declarer = own.of(`context ${c.name}`, settled);
    const shaped = shapedAttachment(specOf(c));
    level.declare(host, c, declarer, { networks: byName, shapedIfname: shaped?.hostIfname });
    declareExtras(c, declarer);
  }
  return own;
}

/** Published ports and the ifb that shapes a limited context's egress (context-extras.ts makes them). */
function declareExtras(c: ContextRecord, own: Declarer): void {
  const spec = specOf(c);
  const shaped = shapedAttachment(spec);
  if (shaped && spec.bandwidth?.egressRate !== undefined) own.own("link", ifbName(shaped.hostIfname));
  const published = spec.publish ?? [];
  own.publish(
    c.name,
    published.length ? { context: c.name, published, target: publishTarget(spec) } : undefined,
  );
}
