/**
 * Published ports: DNAT through nft maps in `table inet netctx` (or the store's own name, naming.ts), so the rule count stays fixed whatever the
 * number of publications (each one is a map element carrying its context's name as comment).
 *
 *  - `pub4`/`pub6` (`l4proto . dport : addr . port`): every host address; `pub4h`/`pub6h` add the host address
 *    in front of the key for `HOSTIP:HOSTPORT:PORT`. Looked up only for packets to a local address (`fib daddr
 *    type local`), so a context's own connections to port 8080 somewhere else are never hijacked.
 *  - `publish_pre` (prerouting): from outside and hairpin from a context; `publish_out` (output): from the host.
 *  - `publish_post`: DNAT'd traffic whose new destination is in its source's network (a context reaching a
 *    neighbour through the host's address) is masqueraded, or the neighbour answers it directly and the client
 *    drops the reply from an address it never spoke to. `intra4`/`intra6` are the NAT part's sets (`subnet . subnet`).
 *  - Loopback is never DNAT'd: in prerouting a packet to 127.0.0.1 can only come from off-host (the reference
 *    portmap plugin's route_localnet lets it in), and in output the kernel refuses to route a 127.0.0.1 source
 *    out of a non-loopback device without route_localnet (the DNAT'd SYN vanishes). The host reaches 127.0.0.1
 *    and ::1 through a cgroup connect hook instead (kernel/bpf/publish-loopback.ts).
 *
 * The maps and chains (publish-objects.ts) are one part of `table inet netctx`, written through the firewall owner
 * (firewall.ts): whichever part finds the table damaged rebuilds it with every part's elements; gc hands the
 * publications of every context to its reconcile.
 */
import type { Host } from "../host.ts";
import { attachLoopbackPublish, detachLoopbackPublish } from "../kernel/bpf/publish-loopback.ts";
import type { Published } from "../model/publish.ts";
import { Nft } from "./nft.ts";
import {
  checkComment,
  desired,
  elementsOf,
  mapLines,
  type PublishElement,
  type PublishTarget,
  same,
  taken,
} from "./publish-objects.ts";
import { CLAIMED_NAME, readTable } from "./tables.ts";

export {
  PUBLISH_RULE_COUNT,
  type PublishElement,
  type PublishTarget,
  type WantedPublish,
} from "./publish-objects.ts";

/**
 * Make the kernel hold exactly these publications for `context` (an empty list removes them). A host port held
 * by another context's element is a conflict and nothing changes.
 */
export function publishContext(
  host: Host,
  context: string,
  published: Published[],
  target: PublishTarget,
): void {
  checkComment(context);
  host.firewall((fw) => {
    const listing = fw.table("inet");
    if (!listing.exists && published.length === 0) return;
    const have = elementsOf(listing);
    const want = desired(context, published, target);
    for (const w of want) {
      const clash = taken(w, have);
      if (clash) throw clash;
    }
    const listed = have.filter((h) => h.context === context);
    const mend = fw.repairLines(listing, ["publish"], { job: "publish", owner: context });
    // Mended, the table holds none of this context's elements: its maps were absent, or rebuilt without them.
    const mine = mend.length ? [] : listed;
    const gone = mine.filter((h) => !want.some((w) => same(w, h)));
    const added = want.filter((w) => !mine.some((h) => same(w, h)));
    if (want.length > 0 || listed.length > 0) fw.apply([...mend, ...mapLines(fw.tableName, gone, added)]);
    attachLoopbackPublish(host.config.publishCgroup, published, target);
  });
}

/**
 * Remove every map element of `context` and the loopback programs of `published` (its recorded publications);
 * missing ones are fine.
 */
export function unpublishContext(host: Host, context: string, published: readonly Published[] = []): void {
  checkComment(context);
  host.firewall((fw) => {
    const mine = elementsOf(fw.table("inet")).filter((e) => e.context === context);
    fw.apply(mapLines(fw.tableName, mine, []));
    detachLoopbackPublish(host.config.publishCgroup, published);
  });
}

/** Every publication element in the maps of the tables named `table` (for inspect and tests). */
export function publishedElements(nft = new Nft(), table = CLAIMED_NAME): PublishElement[] {
  return elementsOf(readTable("inet", { name: table }, nft.list(["table", "inet", table])));
}
