/** `netctx cluster status`: every node record in etcd with what its lease has left. */
import type { Etcd } from "./etcd.ts";
import { NODES, nodeOfKey } from "./keys.ts";
import type { BlockRef } from "./node-record.ts";
import { parseNodeRecord } from "./node-record.ts";

export interface NodeStatus {
  name: string;
  underlay: string;
  vtepMac: string;
  blocks: BlockRef[];
  contexts: number;
  version: string;
  registeredAt: string;
  /** Seconds since the node registered, by the reader's clock against the node's (skew shows here). */
  leaseAge: number;
  /** The TTL the lease was granted with and what it has left (seconds); ttlLeft undefined: the lease just ended. */
  ttl: number;
  ttlLeft: number | undefined;
  lease: string;
}

export interface ClusterStatus {
  /** The node of the engine that answered, when an engine did (the CLI with --etcd answers for nobody). */
  self?: string | undefined;
  nodes: NodeStatus[];
  /** Keys under /netctx/v1/nodes/ that hold no node record (written by something else): named, not hidden. */
  unreadable: string[];
}

export async function clusterStatus(etcd: Etcd, now = Date.now()): Promise<ClusterStatus> {
  const entries = await etcd.range(NODES);
  const unreadable: string[] = [];
  const read = entries.flatMap((e) => {
    const record = parseNodeRecord(e.value);
    if (!record) unreadable.push(e.key);
    return record ? [{ record, lease: e.lease, key: e.key }] : [];
  });
  const lives = await Promise.all(read.map((r) => (r.lease === "0" ? undefined : etcd.leaseLife(r.lease))));
  const nodes = read.map(({ record, lease, key }, i): NodeStatus => {
    const started = Date.parse(record.registeredAt);
    return {
      // The key names the node; the record's own name field agrees unless someone wrote the key by hand.
      name: nodeOfKey(key),
      underlay: record.underlay,
      vtepMac: record.vtepMac,
      blocks: record.blocks,
      contexts: record.contexts,
      version: record.version,
      registeredAt: record.registeredAt,
      leaseAge: Number.isNaN(started) ? 0 : Math.max(0, Math.round((now - started) / 1000)),
      ttl: lives[i]?.granted ?? record.ttl,
      ttlLeft: lives[i]?.ttl,
      lease,
    };
  });
  return { nodes, unreadable };
}
