/**
 * What the overlay's member guard keeps in `table inet netctx` (overlay-members.ts says how and why): the sets of
 * members' underlay addresses and of VXLAN ports, and a chain at input with two fixed rules.
 */
import type { NftValue } from "./nft.ts";
import { type ChainDecl, listedElements, type SetDecl, setHealthy, type TablePart } from "./tables.ts";

export const S_MEMBERS4: SetDecl = {
  kind: "set",
  name: "ov_members4",
  decl: "type ipv4_addr;",
  type: ["ipv4_addr"],
};
export const S_MEMBERS6: SetDecl = {
  kind: "set",
  name: "ov_members6",
  decl: "type ipv6_addr;",
  type: ["ipv6_addr"],
};
export const S_PORTS: SetDecl = {
  kind: "set",
  name: "ov_ports",
  decl: "type inet_service;",
  type: ["inet_service"],
};
export const SETS = [S_MEMBERS4, S_MEMBERS6, S_PORTS] as const;

export const OVERLAY_CHAIN = "overlay_in";

const CHAIN: ChainDecl = {
  name: OVERLAY_CHAIN,
  type: "filter",
  hook: "input",
  prio: -300,
  rules: [
    "meta nfproto ipv4 udp dport @ov_ports ip saddr != @ov_members4 counter drop",
    "meta nfproto ipv6 udp dport @ov_ports ip6 saddr != @ov_members6 counter drop",
  ],
};

/** Every element is the members' as a whole: a rebuild for syncMembers leaves them out and it writes them anew. */
export const OWNER = "members";

export const OVERLAY_MEMBERS: TablePart = {
  job: "overlay",
  family: "inet",
  sets: SETS,
  chains: [CHAIN],
  listed: (listing) =>
    SETS.filter((s) => setHealthy(listing, s)).flatMap((s) =>
      listedElements(listing, s).map((v) => ({ set: s.name, text: elementText(v), owner: OWNER })),
    ),
};

function elementText(v: NftValue): string {
  return String(v);
}
