/**
 * Who may speak VXLAN to this host (issue 18). VXLAN carries no authentication: anybody who can send UDP to the
 * host's VXLAN port can put a frame onto an overlay network, with any inner source. So the host accepts VXLAN only
 * from the underlay addresses of current cluster members, kept in step with etcd by the cluster side (syncMembers).
 *
 * A part of `table inet netctx` (parts.ts; the store's own name, naming.ts): sets `ov_members4` / `ov_members6`
 * (underlay addresses) and `ov_ports` (the VXLAN ports in use), and a chain at input that drops UDP to those ports
 * from any other source. At input, not prerouting: only packets for this host's own sockets (the VXLAN devices')
 * are judged, never traffic it forwards. The rule count is fixed; members are set elements, changed one by one.
 */
import { invalid } from "../errors.ts";
import type { Host } from "../host.ts";
import { parseIp } from "../net/cidr.ts";
import {
  OVERLAY_CHAIN,
  OVERLAY_MEMBERS,
  OWNER,
  S_MEMBERS4,
  S_MEMBERS6,
  S_PORTS,
  SETS,
} from "./overlay-members-objects.ts";
import { elementLines, type PartElement, type TableListing } from "./tables.ts";

export { OVERLAY_CHAIN } from "./overlay-members-objects.ts";

export const VXLAN_PORT = 4789;

/** What syncMembers changed. */
export interface MemberSync {
  added: number;
  removed: number;
}

/**
 * Make the sets hold exactly `addresses` (v4 and v6 underlay addresses of the members) and `ports`, element by
 * element, in one transaction; the part is made on first use (then VXLAN from anyone else is dropped at once, even
 * with no member yet).
 */
export function syncMembers(
  host: Host,
  addresses: readonly string[],
  ports: readonly number[] = [VXLAN_PORT],
): MemberSync {
  const want = new Map<string, Set<string>>(SETS.map((s) => [s.name, new Set<string>()]));
  for (const [i, a] of addresses.entries()) {
    const ip = parseIp(a, `addresses[${i}]`);
    want.get(ip.family === 4 ? S_MEMBERS4.name : S_MEMBERS6.name)!.add(ip.text);
  }
  for (const [i, p] of ports.entries()) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw invalid(`ports[${i}]`, `${p} is not a port`);
    want.get(S_PORTS.name)!.add(String(p));
  }
  const result: MemberSync = { added: 0, removed: 0 };
  host.firewall((fw) => {
    const listing = fw.table("inet");
    const mend = fw.repairLines(listing, ["overlay"], { job: "overlay", owner: OWNER });
    // Mended, the sets hold none of ours: they were absent, or the table was rebuilt without them.
    const have = mend.length ? [] : OVERLAY_MEMBERS.listed(listing);
    const del: PartElement[] = have.filter((e) => !want.get(e.set)?.has(e.text));
    const add: PartElement[] = [];
    for (const [set, texts] of want)
      for (const text of texts)
        if (!have.some((e) => e.set === set && e.text === text)) add.push({ set, text });
    result.added = add.length;
    result.removed = del.length;
    const t = fw.tableName;
    const lines = [
      ...mend,
      ...elementLines("inet", t, "delete", del),
      ...elementLines("inet", t, "add", add),
    ];
    if (lines.length) fw.apply(lines);
  });
  return result;
}

/** The members the sets hold now (for tests and inspect). */
export function listedMembers(listing: TableListing): string[] {
  return OVERLAY_MEMBERS.listed(listing)
    .filter((e) => e.set !== S_PORTS.name)
    .map((e) => e.text);
}

/** The part goes from the table (the host's last overlay network went): VXLAN to its ports is no longer judged. */
export function dropMemberGuard(host: Host): void {
  host.firewall((fw) => {
    const listing = fw.table("inet");
    if (!listing.chains.has(OVERLAY_CHAIN) && !SETS.some((s) => listing.sets.has(s.name))) return;
    const t = `inet ${fw.tableName}`;
    const lines = listing.chains.has(OVERLAY_CHAIN) ? [`delete chain ${t} ${OVERLAY_CHAIN}`] : [];
    for (const s of SETS) if (listing.sets.has(s.name)) lines.push(`delete set ${t} ${s.name}`);
    fw.apply(lines);
  });
}
