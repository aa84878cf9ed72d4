/**
 * What the engine records about a context before touching the kernel, so gc can finish or undo it. The store
 * checks every spec it writes and reads against this schema; a key it does not know is a malformed record, not
 * something to carry along unread.
 */
import { z } from "zod";
import { AttachmentSchema } from "./attachment.ts";
import { HostPortSchema } from "./host-port.ts";
import { BandwidthSchema, PublishedSchema } from "./publish.ts";

export const ContextSpecSchema = z.strictObject({
  attachments: z.array(AttachmentSchema),
  /** l2: path of the context's own netns. */
  netns: z.string().exactOptional(),
  /** l2: the netns belongs to somebody else (a container runtime): never delete it. */
  netnsExternal: z.boolean().exactOptional(),
  /** Owner marks from ContextInput.labels (CNI: container id, ifname, config name). */
  labels: z.record(z.string(), z.string()).exactOptional(),
  /** l3 and socket: the context's cgroup directory. */
  cgroup: z.string().exactOptional(),
  /** l3: the context's routing table. */
  table: z.number().int().exactOptional(),
  /** l3: extra routes, in `ip route` form as the user gave them. */
  routes: z.array(z.string()).exactOptional(),
  /** Published ports (firewall/publish.ts). */
  publish: z.array(PublishedSchema).exactOptional(),
  /** l3 and socket: host loopback ports it may reach; the rest of loopback is its own address (kernel/bpf/jail-loopback.ts). */
  allowHostPorts: z.array(HostPortSchema).exactOptional(),
  /** l2: rate limits on the host side of the first attachment (networks/bandwidth.ts). */
  bandwidth: BandwidthSchema.exactOptional(),
  /** More DNS names the context answers to beside its own (`--alias`, dns/tables.ts). */
  aliases: z.array(z.string()).exactOptional(),
});
export type ContextSpec = z.infer<typeof ContextSpecSchema>;
