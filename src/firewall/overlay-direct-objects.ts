/**
 * The sets that let an internal overlay network with direct routing (issue 18) reach its peers' blocks through the
 * underlay device, and nothing else (the rules that read them are the NAT part's forward chain, nat-objects.ts; the
 * elements are written by overlay-direct.ts). Direct traffic is unencapsulated and leaves and arrives through the
 * underlay device, which is no interface of the network, so the internal rules would drop it; these sets name the
 * exact paths that are the network's own, by addresses, next hop and sender, never by the device alone:
 *  - `direct_out4`/`direct_out6` (`SUBNET . PEER-BLOCK . PEER-UNDERLAY`): a packet from the network (its source in
 *    SUBNET, checked against its arrival interface first) to a peer's block, routed to that peer's underlay address.
 *    `rt ip nexthop` is the host's own routing decision: the next hop is the peer only when the route is our direct
 *    route for that block, so neither the peer's underlay address itself nor the world matches.
 *  - `direct_in4`/`direct_in6` (`PEER-BLOCK . PEER-UNDERLAY-MAC . SUBNET`): a packet into the network whose source is in
 *    a peer's block and whose Ethernet sender is that peer's underlay device (its MAC comes from the peer's node
 *    record in etcd, as the member guard's addresses do): anybody else on the underlay claiming the block is dropped.
 * The elements are one per (subnet, peer block): the rule count never grows with peers.
 */
import type { NftValue } from "./nft.ts";
import {
  asRecord,
  listedElements,
  type PartElement,
  type SetDecl,
  setHealthy,
  type TableListing,
} from "./tables.ts";

function directSet(name: string, type: string[]): SetDecl & { type: readonly string[] } {
  return { kind: "set", name, decl: `type ${type.join(" . ")}; flags interval;`, type, interval: true };
}

export const S_DIRECT_OUT4 = directSet("direct_out4", ["ipv4_addr", "ipv4_addr", "ipv4_addr"]);
export const S_DIRECT_OUT6 = directSet("direct_out6", ["ipv6_addr", "ipv6_addr", "ipv6_addr"]);
export const S_DIRECT_IN4 = directSet("direct_in4", ["ipv4_addr", "ether_addr", "ipv4_addr"]);
export const S_DIRECT_IN6 = directSet("direct_in6", ["ipv6_addr", "ether_addr", "ipv6_addr"]);

export const DIRECT_SETS = [S_DIRECT_OUT4, S_DIRECT_OUT6, S_DIRECT_IN4, S_DIRECT_IN6] as const;

/** Every element is the overlay data path's as a whole: a rebuild for syncDirectPaths leaves them out. */
export const DIRECT_OWNER = "direct";

/** The elements the listing holds, as nft accepts them back (`10.1.0.0/16 . 10.1.2.0/24 . 192.168.0.2`). */
export function listedDirect(listing: TableListing): PartElement[] {
  return DIRECT_SETS.filter((s) => setHealthy(listing, s)).flatMap((s) =>
    listedElements(listing, s).flatMap((v) => {
      const text = directElementText(v);
      return text === undefined ? [] : [{ set: s.name, text, owner: DIRECT_OWNER }];
    }),
  );
}

/** A concatenation as nft lists it in JSON, in our text; undefined for anything of another shape. */
function directElementText(v: NftValue): string | undefined {
  const val = asRecord(v)?.["elem"] !== undefined ? (asRecord(asRecord(v)?.["elem"])?.["val"] ?? null) : v;
  const concat = asRecord(val)?.["concat"];
  if (!Array.isArray(concat)) return undefined;
  const parts: string[] = [];
  for (const p of concat) {
    if (typeof p === "string") parts.push(p.toLowerCase());
    else {
      const prefix = asRecord(asRecord(p)?.["prefix"]);
      if (!prefix || typeof prefix["addr"] !== "string" || typeof prefix["len"] !== "number")
        return undefined;
      parts.push(`${prefix["addr"]}/${prefix["len"]}`);
    }
  }
  return parts.join(" . ");
}
