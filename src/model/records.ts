/**
 * The records of the state: networks, contexts and the address leases that tie them together. The types are
 * derived from these schemas, and a state store parses every record it loads through them, so a malformed row is
 * refused naming the record and the field instead of failing somewhere deep in the engine.
 */
import { z } from "zod";
import { ContextSpecSchema } from "./context-spec.ts";
import { LEVELS } from "./schemas.ts";

export type Level = (typeof LEVELS)[number];

export const CONTEXT_STATUSES = ["creating", "ready", "removing"] as const;
export type ContextStatus = (typeof CONTEXT_STATUSES)[number];

/**
 * An operation under way on a record, and who runs it: gc tells a crashed operation (process gone: finish or
 * undo it) from one still running (leave it alone). The process's start time guards against pid reuse.
 */
export const OpMarkSchema = z.strictObject({
  /** "connect": a `network connect` of a ready context (its last attachment is the one being made); contexts only. */
  op: z.enum(["create", "remove", "connect"]),
  pid: z.number().int().positive(),
  /** Field 22 of /proc/PID/stat; empty when it could not be read. */
  start: z.string(),
});
export type OpMark = z.infer<typeof OpMarkSchema>;

/** An apply scene's name: one line, bounded (it is shown in errors and kept in records). */
export const SceneNameSchema = z
  .string()
  .min(1, "must not be empty")
  .max(256, "is longer than 256 characters")
  .refine((s) => !/\p{Cc}/u.test(s), "must be one line without control characters");

/**
 * The label an apply puts on each context it makes: its scene's name (contexts already carry labels; networks
 * have a record field of their own, NetworkRecord.scene).
 */
export const SCENE_LABEL = "netctx.scene";

export const SubnetRecordSchema = z.strictObject({
  cidr: z.string(),
  gateway: z.string().exactOptional(),
});
export type SubnetRecord = z.infer<typeof SubnetRecordSchema>;

/** One address block of a cluster-scoped network that this node holds (cluster/blocks.ts), with its gateway. */
export const HeldBlockSchema = z.strictObject({ cidr: z.string(), gateway: z.string() });
export type HeldBlock = z.infer<typeof HeldBlockSchema>;

/**
 * What a network mirrored from the cluster (an overlay network, kept in etcd) carries beyond a local one: its VNI,
 * this node's name, the block length of each subnet, and the blocks this node holds, the only addresses it hands out.
 */
export const ClusterScopeSchema = z.strictObject({
  vni: z.number().int().positive(),
  /** This node's name in the cluster, as of the mirror (`inspect` shows it as the node of the network's contexts). */
  node: z.string(),
  /** The block length of each subnet, in the order of `subnets`. */
  blockLengths: z.array(z.number().int()),
  blocks: z.array(HeldBlockSchema),
  /**
   * This node's underlay address and the device holding it, as of the mirror: the VXLAN device's local end and lower
   * device (networks/overlay.ts). Absent until the engine knows them; then the network has no VXLAN device.
   */
  underlay: z.string().exactOptional(),
  underlayDev: z.string().exactOptional(),
});
export type ClusterScope = z.infer<typeof ClusterScopeSchema>;

export const NetworkRecordSchema = z.strictObject({
  name: z.string().min(1),
  driver: z.string(),
  subnets: z.array(SubnetRecordSchema),
  nat: z.boolean(),
  internal: z.boolean(),
  mtu: z.number().int().nonnegative(),
  /** Driver-specific options and `antispoof`, as the user gave them. */
  options: z.record(z.string(), z.unknown()),
  /** Set while a create or rm of the network is under way. */
  op: OpMarkSchema.exactOptional(),
  /**
   * The apply scene that made the network (its `name:`, or its file's absolute path); absent when it was made
   * otherwise (CLI, API, CNI). `apply --prune` removes only its own scene's networks.
   */
  scene: SceneNameSchema.exactOptional(),
  /**
   * Set when the network is cluster-scoped: its record lives in etcd and this one is the node's mirror. Removing it
   * goes through etcd (the engine); gc never removes it on its own.
   */
  cluster: ClusterScopeSchema.exactOptional(),
  createdAt: z.string().exactOptional(),
});
export type NetworkRecord = z.infer<typeof NetworkRecordSchema>;

export const ContextRecordSchema = z.strictObject({
  name: z.string().min(1),
  level: z.enum(LEVELS),
  status: z.enum(CONTEXT_STATUSES),
  spec: ContextSpecSchema,
  /**
   * Set by the create or rm that last changed the context (a ready context keeps its create's mark), and by a
   * network connect while it runs.
   */
  op: OpMarkSchema.exactOptional(),
  createdAt: z.string().exactOptional(),
});
export type ContextRecord = z.infer<typeof ContextRecordSchema>;

/** An address handed to an owner (a context) from one subnet of a network. */
export interface Lease {
  network: string;
  subnet: string;
  address: string;
  prefix: number;
  owner: string;
  /** The gateway for this address, when it depends on the address (a cluster-scoped network's block). */
  gateway?: string;
}
