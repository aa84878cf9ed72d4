/** A context's link into a network (l2: a veth or macvlan; l3 and socket: addresses on the network's device). */
export interface Attachment {
  network: string;
  /** Interface name inside the context's netns. */
  ifname: string;
  /** Host-side peer (veth) name; empty for drivers without one. */
  hostIfname: string;
  /** The context's addresses on this network as configured inside it ("10.1.0.5/24", "10.2.0.5/32"). */
  addresses: string[];
  /** The network's gateways, one per family it has. */
  gateways: string[];
  mac?: string;
  mtu: number;
}
