/**
 * The etcd key layout of a netctx cluster, in one place (README: "Cluster state in etcd"). Every key sits under one
 * versioned root, so a later layout can live beside this one during an upgrade, and `etcdctl get --prefix /netctx/`
 * shows all of netctx. Values are JSON.
 *
 *   /netctx/v1/nodes/NODE              NodeRecord (node-record.ts), attached to the node's lease: it vanishes when the
 *                                      engine stops renewing it (TTL --node-ttl, default 10 s)
 *   /netctx/v1/networks/NETWORK        a cluster-scoped (overlay) network (OverlayNetwork, overlay-state.ts):
 *                                      {name, subnets: [{cidr, block}], vni, nat, internal, mtu, options, createdBy,
 *                                      createdAt}; `block` is the prefix length of the subnet's address blocks. Written
 *                                      once by `network create` in a transaction that fails if the name exists or a
 *                                      key under networks/ changed since the read (subnet overlap, VNI uniqueness);
 *                                      deleted by `network rm` only while no block of it exists. Every engine watches
 *                                      networks/ and mirrors them into its store.
 *   /netctx/v1/blocks/NETWORK/CIDR     one address block of NETWORK leased to a node: {node, network, cidr, since,
 *                                      orphanedSince?}; CIDR with its '/' written as '_' (10.88.3.0_24), so a block is
 *                                      one segment. Created if absent, while the network's key is unchanged; the node
 *                                      allocates inside it without etcd and deletes it when its last address goes.
 *                                      Not under the node's lease: when the node has no record, an engine marks the
 *                                      block orphanedSince and frees it after --block-grace (default 3600 s); a node
 *                                      that comes back first gets its blocks back; `netctx cluster forget NODE` frees
 *                                      them at once.
 *   /netctx/v1/names/NODE/CONTEXT      the DNS names of a context of NODE on overlay networks that serve DNS:
 *                                      {name, aliases, attachments: [{network, addresses}]}. Written by the owning
 *                                      engine shortly after create/rm (never on the create's path), in batches; read
 *                                      by every engine into its DNS tables. Only names of nodes with a record are
 *                                      served, so a dead node's names go with its lease; its keys stay until it comes
 *                                      back (and rewrites them) or `cluster forget` removes them.
 */

export const ROOT = "/netctx/v1/";
export const NODES = `${ROOT}nodes/`;
export const NETWORKS = `${ROOT}networks/`;
export const BLOCKS = `${ROOT}blocks/`;
export const NAMES = `${ROOT}names/`;

/** The names one node publishes: the prefix to range over. */
export function nodeNamesPrefix(node: string): string {
  return `${NAMES}${node}/`;
}

export function nameKey(node: string, context: string): string {
  return `${nodeNamesPrefix(node)}${context}`;
}

export function nodeKey(name: string): string {
  return `${NODES}${name}`;
}

export function networkKey(name: string): string {
  return `${NETWORKS}${name}`;
}

/** Every block of one network: the prefix to range over. */
export function networkBlocksPrefix(network: string): string {
  return `${BLOCKS}${network}/`;
}

export function blockKey(network: string, cidr: string): string {
  return `${networkBlocksPrefix(network)}${cidr.replace("/", "_")}`;
}

/** The CIDR a block key names (the inverse of blockKey). */
export function blockCidr(key: string): string {
  const segment = key.slice(key.lastIndexOf("/") + 1);
  return segment.replace("_", "/");
}

/** The node name a node key names. */
export function nodeOfKey(key: string): string {
  return key.slice(NODES.length);
}

/** The end of a prefix range (etcd's range_end): the prefix with its last byte incremented. */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
