/**
 * What the kernel data path of an overlay network needs to know about the other nodes (flannel's per-node entries):
 * for each peer that holds blocks of the network, where to send (its underlay address and VTEP MAC) and which blocks
 * to route there. Computed from etcd's node records and blocks alone, so it can be tested without a kernel, and the
 * data path (ensureOverlayDevice/syncPeers) gets one plain list to program.
 */
import type { BlockRecord, NodeRecord } from "./node-record.ts";

/** One peer of an overlay network, as the data path's syncPeers() takes it. */
export interface OverlayPeer {
  node: string;
  /** Its underlay address: VXLAN's remote, direct routing's gateway. */
  underlay: string;
  /** Its VTEP's MAC: the permanent neighbour and FDB entry. */
  vtepMac: string;
  /** Its blocks of this network, the routes through it (CIDR texts, sorted). */
  blocks: string[];
  /** Reached without encapsulation (a shared L2 underlay, --direct-routing). */
  direct?: boolean;
}

/** This node's side of an overlay network, as the data path's ensureOverlayDevice() takes it. */
export interface OverlayLocal {
  network: string;
  vni: number;
  port: number;
  underlay: string;
  underlayDev: string;
  mtu: number;
  blocks: string[];
}

/**
 * The peers of `network` for node `self`: every other node that has a record (its lease is alive) and holds at least
 * one block of the network. Blocks of nodes without a record (gone, within their grace period) are left out: there
 * is nobody to send to. A peer without a VTEP MAC yet (its data path has not made the device) is left out too (an
 * FDB entry needs one), unless it is reached directly. `direct`: whether an underlay address shares the local L2 segment.
 */
export function peersOf(
  network: string,
  nodes: readonly NodeRecord[],
  blocks: readonly BlockRecord[],
  self: string,
  direct?: (underlay: string) => boolean,
): OverlayPeer[] {
  const byNode = new Map<string, string[]>();
  for (const b of blocks) {
    if (b.network !== network || b.node === self) continue;
    const list = byNode.get(b.node) ?? [];
    list.push(b.cidr);
    byNode.set(b.node, list);
  }
  return nodes
    .filter((n) => n.name !== self && byNode.has(n.name))
    .map((n) => ({
      node: n.name,
      underlay: n.underlay,
      vtepMac: n.vtepMac,
      blocks: [...byNode.get(n.name)!].sort(),
      ...(direct?.(n.underlay) ? { direct: true } : {}),
    }))
    .filter((p) => p.vtepMac !== "" || p.direct)
    .sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
}
