/**
 * The direct-routing paths of internal overlay networks (issue 18) in `table inet netctx`: which peer blocks the
 * network's contexts may reach through the underlay device, via which next hop, and from which sender they may be
 * reached (overlay-direct-objects.ts says what the sets mean). The cluster side computes the paths from etcd's node
 * records and blocks after every data path pass (engine/overlay.ts) and hands the whole list here; the sets are made
 * to hold exactly it, element by element, in one transaction, as the member guard's are (overlay-members.ts).
 */
import { invalid } from "../errors.ts";
import type { Host } from "../host.ts";
import { isValidMac, parseIp, parseSubnet } from "../net/cidr.ts";
import { DIRECT_OWNER, DIRECT_SETS, listedDirect } from "./overlay-direct-objects.ts";
import { elementLines, type PartElement } from "./tables.ts";

/** One peer block an internal network reaches directly. */
export interface DirectPath {
  /** A subnet of the network, of the block's family (the source side of its contexts). */
  subnet: string;
  /** The peer's block inside it. */
  block: string;
  /** The peer's underlay address: the next hop of the block's direct route. */
  underlay: string;
  /** The MAC of the peer's underlay device, from its node record; absent: nothing from that peer is let in. */
  underlayMac?: string;
}

/** What syncDirectPaths changed. */
export interface DirectSync {
  added: number;
  removed: number;
}

/** The elements the paths make: `SUBNET . BLOCK . UNDERLAY` out, `BLOCK . MAC . SUBNET` in, in nft's text. */
export function directElements(paths: readonly DirectPath[]): PartElement[] {
  const out: PartElement[] = [];
  for (const [i, p] of paths.entries()) {
    const subnet = parseSubnet(p.subnet, `paths[${i}].subnet`);
    const block = parseSubnet(p.block, `paths[${i}].block`);
    const underlay = parseIp(p.underlay, `paths[${i}].underlay`);
    if (block.family !== subnet.family || underlay.family !== subnet.family)
      throw invalid(`paths[${i}]`, `${p.subnet}, ${p.block} and ${p.underlay} are not of one family`);
    const f = subnet.family;
    out.push({ set: `direct_out${f}`, text: `${subnet.text} . ${block.text} . ${underlay.text}` });
    if (p.underlayMac === undefined) continue;
    const mac = p.underlayMac.toLowerCase();
    if (!isValidMac(mac)) throw invalid(`paths[${i}].underlayMac`, `"${p.underlayMac}" is not a MAC address`);
    out.push({ set: `direct_in${f}`, text: `${block.text} . ${mac} . ${subnet.text}` });
  }
  return out;
}

/** Make the direct sets hold exactly these paths' elements (the NAT part is made on first use). */
export function syncDirectPaths(host: Host, paths: readonly DirectPath[]): DirectSync {
  const want = directElements(paths);
  const key = (e: PartElement) => `${e.set} ${canonical(e.text)}`;
  const wanted = new Set(want.map(key));
  const result: DirectSync = { added: 0, removed: 0 };
  host.firewall((fw) => {
    const listing = fw.table("inet");
    // Nothing to hold and nothing held: a host without such a network gets no table for it.
    if (want.length === 0 && !DIRECT_SETS.some((s) => listing.sets.has(s.name))) return;
    const mend = fw.repairLines(listing, ["nat"], { job: "nat", owner: DIRECT_OWNER });
    // Mended, the sets hold none of ours: they were absent, or the table was rebuilt without them.
    const have = mend.length ? [] : listedDirect(listing);
    const held = new Set(have.map(key));
    const del = have.filter((e) => !wanted.has(key(e)));
    const add = want.filter((e) => !held.has(key(e)));
    if (mend.length === 0 && del.length === 0 && add.length === 0) return;
    result.added = add.length;
    result.removed = del.length;
    const t = fw.tableName;
    fw.apply([...mend, ...elementLines("inet", t, "delete", del), ...elementLines("inet", t, "add", add)]);
  });
  return result;
}

/** An element's text with each address in the one codec's form (nft and we may write IPv6 differently). */
function canonical(text: string): string {
  return text
    .split(" . ")
    .map((part) => {
      if (part.includes("/")) return parseSubnet(part, "element").text;
      if (isValidMac(part)) return part.toLowerCase();
      return parseIp(part, "element").text;
    })
    .join(" . ");
}
