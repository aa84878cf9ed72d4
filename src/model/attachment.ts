import { z } from "zod";

/** A context's link into a network (l2: a veth or macvlan; l3 and socket: addresses on the network's device). */
export const AttachmentSchema = z.strictObject({
  network: z.string(),
  /** Interface name inside the context's netns. */
  ifname: z.string(),
  /** Host-side peer (veth) name; empty for drivers without one. */
  hostIfname: z.string(),
  /** The context's addresses on this network as configured inside it ("10.1.0.5/24", "10.2.0.5/32"). */
  addresses: z.array(z.string()),
  /** The network's gateways, one per family it has. */
  gateways: z.array(z.string()),
  mac: z.string().exactOptional(),
  mtu: z.number().int(),
});
export type Attachment = z.infer<typeof AttachmentSchema>;
