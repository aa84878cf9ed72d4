/**
 * A node's record in etcd (/netctx/v1/nodes/NODE, keys.ts): who the node is, where its peers reach it, and what it
 * holds. Written by the node's own engine under its lease; read by every peer and by `netctx cluster status`.
 * Readers ignore fields they do not know, so a newer engine can add some without breaking an older peer.
 */
import { z } from "zod";

export const BlockRefSchema = z.object({ network: z.string(), cidr: z.string() });
export type BlockRef = z.infer<typeof BlockRefSchema>;

export const NodeRecordSchema = z.object({
  name: z.string(),
  /** The address peers send to (VXLAN's remote, direct routing's gateway). */
  underlay: z.string(),
  /** MAC of this node's VTEP; "" until the data path makes the VXLAN device. */
  vtepMac: z.string(),
  /**
   * MAC of the device that holds the underlay address: the Ethernet sender of this node's direct-routed packets, by
   * which an internal network with direct routing tells them from anybody else's on the segment
   * (firewall/overlay-direct-objects.ts). Absent from an older engine's record: nothing direct from it is let in.
   */
  underlayMac: z.string().optional(),
  /** Address blocks this node holds (their keys are /netctx/v1/blocks/NETWORK/CIDR). */
  blocks: z.array(BlockRefSchema),
  /** How many contexts the node's engine has, as of its last publish (re-published when it changes). */
  contexts: z.number().int().min(0),
  /** The TTL (s) the node's lease was granted with. */
  ttl: z.number().int().min(1),
  /** When this registration began, by the node's clock (ISO 8601): the lease's age in `cluster status`. */
  registeredAt: z.string(),
  /** The netctx version the node runs. */
  version: z.string(),
});
export type NodeRecord = z.infer<typeof NodeRecordSchema>;

/** The record in a value read from etcd, or undefined when it is not one (written by something else). */
export function parseNodeRecord(value: string): NodeRecord | undefined {
  try {
    const parsed = NodeRecordSchema.safeParse(JSON.parse(value));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A block's value (/netctx/v1/blocks/NETWORK/CIDR): which node leased it and since when. The node's engine writes it
 * (cluster/overlay-state.ts, in a transaction that fails if the key exists, so two nodes never hold one block);
 * forget frees them, and so does any engine once the node has been gone longer than the grace period.
 */
export const BlockRecordSchema = z.object({
  node: z.string(),
  network: z.string(),
  cidr: z.string(),
  /** ISO time the node leased the block. */
  since: z.string(),
  /**
   * ISO time an engine first found the block's node gone (no node record); the block is freed once this is older
   * than the grace period (serve --block-grace), and dropped again when the node comes back.
   */
  orphanedSince: z.string().optional(),
});
export type BlockRecord = z.infer<typeof BlockRecordSchema>;

export function parseBlockRecord(value: string): BlockRecord | undefined {
  try {
    const parsed = BlockRecordSchema.safeParse(JSON.parse(value));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
