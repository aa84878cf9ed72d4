/**
 * What the kernel data path of an overlay network needs to know about the other nodes (flannel's per-node entries):
 * for each peer that holds blocks of the network, where to send (its underlay address and VTEP MAC) and which blocks
 * to route there. Computed from etcd's node records and blocks alone, so it can be tested without a kernel, and the
 * data path (ensureOverlayDevice/syncPeers) gets one plain list to program.
 */
import { stableMac } from "../net/cidr.ts";
import type { BlockRecord, NodeRecord } from "./node-record.ts";

/** A host this one reaches over an overlay network (its node record, as the cluster side reads it). */
export interface OverlayPeer {
  /** Its node name: what a refusal names. */
  node: string;
  /** Its underlay address, IPv4 or IPv6 (the VXLAN remote; direct routing's gateway). */
  underlay: string;
  /** MAC of its VXLAN device; "" until it has one (then only its direct routes can be made). */
  vtepMac: string;
  /** MAC of its underlay device, when its record says (direct routing of an internal network lets in only it). */
  underlayMac?: string;
  /** Its blocks of this network, v4 and v6 CIDRs (sorted). */
  blocks: string[];
  /** It shares this host's L2 underlay segment: route its blocks of the underlay's family without encapsulation. */
  direct?: boolean;
}

/** This host's side of one overlay network, as the data path's ensureOverlayDevice() takes it. */
export interface OverlayLocal {
  network: string;
  vni: number;
  /** UDP port of the VXLAN device; default 4789 (IANA). */
  port?: number;
  /** This host's underlay address (the VXLAN device's local address). */
  underlay: string;
  /** The device that holds it (the VXLAN device's lower device; direct routes leave through it). */
  underlayDev: string;
  /** MTU of the VXLAN device; default the underlay device's less 50 (IPv4 underlay) or 70 (IPv6). */
  mtu?: number;
  /**
   * MAC of the VXLAN device. One per node (vtepMacOf), the same on each of its overlay devices: a node record has
   * one VTEP MAC for all the networks. Undefined: the kernel's random one.
   */
  mac?: string;
  /** This host's blocks of the network: their network addresses become the VTEP addresses. */
  blocks: string[];
  /**
   * The network's subnets: a direct route of ours to a block inside them that no peer has any more is found and
   * removed even after a restart (without them, only the routes this Host made are known).
   */
  subnets?: string[];
}

/**
 * A node's VTEP MAC: locally administered, derived from the node's name, so every overlay device of the node has
 * it (the node record carries one) and a restarted engine makes the same one its peers still have in their FDB.
 */
export function vtepMacOf(node: string): string {
  return stableMac(`netctx-vtep:${node}`);
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
      ...(n.underlayMac ? { underlayMac: n.underlayMac } : {}),
      blocks: [...byNode.get(n.name)!].sort(),
      ...(direct?.(n.underlay) ? { direct: true } : {}),
    }))
    .filter((p) => p.vtepMac !== "" || p.direct)
    .sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
}
