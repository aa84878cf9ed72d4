/**
 * `netctx cluster forget NODE`: the node's record and every block it holds go at once, in one transaction, instead
 * of after the lease's TTL and the blocks' grace period. For a node that is gone for good. A node whose engine
 * still runs registers again at its next renewal (its lease is revoked too, so it notices), with no blocks.
 */
import { conflict, notFound } from "../errors.ts";
import type { Etcd, Unchanged } from "./etcd.ts";
import { BLOCKS, nodeKey, nodeNamesPrefix } from "./keys.ts";
import { parseBlockRecord, parseNodeRecord } from "./node-record.ts";

export interface Forgotten {
  node: string;
  /** Whether the node had a record (a node already expired may still hold blocks). */
  record: boolean;
  /** The blocks freed. */
  blocks: { network: string; cidr: string }[];
}

/** Attempts before giving up on a node whose blocks keep changing under us (a live node leasing blocks). */
const ATTEMPTS = 3;

export async function forgetNode(etcd: Etcd, name: string): Promise<Forgotten> {
  for (let attempt = 1; ; attempt++) {
    const record = await etcd.get(nodeKey(name));
    const blocks = (await etcd.range(BLOCKS)).filter((e) => parseBlockRecord(e.value)?.node === name);
    if (!record && blocks.length === 0) throw notFound("node", name);
    // Its published names go too (they are not under the lease: see keys.ts).
    const names = await etcd.range(nodeNamesPrefix(name));
    const keys: Unchanged[] = [...(record ? [record] : []), ...blocks, ...names];
    if (await etcd.deleteIfUnchanged(keys)) {
      // The lease held only the record; revoking it tells a live engine at once that it was forgotten.
      if (record && record.lease !== "0") await etcd.revoke(record.lease);
      return {
        node: name,
        record: record !== undefined && parseNodeRecord(record.value) !== undefined,
        blocks: blocks.map((b) => {
          const block = parseBlockRecord(b.value)!;
          return { network: block.network, cidr: block.cidr };
        }),
      };
    }
    if (attempt >= ATTEMPTS) throw conflict("node", `node ${name}'s keys kept changing; try again`);
  }
}
