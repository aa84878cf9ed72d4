/**
 * Overlay networks and their address blocks in etcd (keys.ts): the transactions that keep them consistent across
 * nodes. A network is created only if its name is free, its subnets overlap no other overlay network and its VNI is
 * unique, all against one snapshot of /netctx/v1/networks/ that the transaction checks is still current. A block is
 * leased with a create-if-absent on its key, in the same transaction as a check that its network is still the one
 * read; a network is removed only while no block of it exists. Either of two racing nodes wins; the other retries
 * against the new state.
 */
import { z } from "zod";
import { conflict, NetctxError, notFound } from "../errors.ts";
import { cidrsOverlap, parseSubnet } from "../net/cidr.ts";
import { blockLength, freeBlock } from "./blocks.ts";
import type { Entry, Etcd } from "./etcd.ts";
import { BLOCKS, blockKey, NETWORKS, networkBlocksPrefix, networkKey } from "./keys.ts";
import { type BlockRecord, parseBlockRecord } from "./node-record.ts";

/** VXLAN network identifiers are 24 bits; 0 is not used. */
export const MAX_VNI = 0xffffff;

/** An overlay network's record in etcd (/netctx/v1/networks/NAME): what every node mirrors into its store. */
export const OverlayNetworkSchema = z.object({
  name: z.string(),
  /** Each subnet with the length of its blocks. */
  subnets: z.array(z.object({ cidr: z.string(), block: z.number().int() })),
  vni: z.number().int().min(1).max(MAX_VNI),
  nat: z.boolean(),
  internal: z.boolean(),
  mtu: z.number().int().nonnegative(),
  options: z.record(z.string(), z.unknown()),
  /** The node whose engine created it, and when (ISO 8601). */
  createdBy: z.string(),
  createdAt: z.string(),
});
export type OverlayNetwork = z.infer<typeof OverlayNetworkSchema>;

export function parseOverlayNetwork(value: string): OverlayNetwork | undefined {
  try {
    const parsed = OverlayNetworkSchema.safeParse(JSON.parse(value));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** Transactions that lost a race are tried again against the new state this often before giving up. */
const ATTEMPTS = 5;

/** Every overlay network in etcd (keys that hold no record are skipped). */
export async function overlayNetworks(etcd: Etcd): Promise<OverlayNetwork[]> {
  return (await etcd.range(NETWORKS)).flatMap((e) => {
    const n = parseOverlayNetwork(e.value);
    return n ? [n] : [];
  });
}

/** Writes a new overlay network with a VNI of its own; the record as written. */
export async function createOverlayNetwork(
  etcd: Etcd,
  draft: Omit<OverlayNetwork, "vni"> & { vni?: number },
): Promise<OverlayNetwork> {
  const subnets = draft.subnets.map((s) => {
    const cidr = parseSubnet(s.cidr, "subnet");
    blockLength(cidr, s.block);
    return cidr;
  });
  for (let attempt = 1; ; attempt++) {
    const { entries, revision } = await etcd.snapshot(NETWORKS);
    const others = entries.flatMap((e) => {
      const n = parseOverlayNetwork(e.value);
      return n ? [n] : [];
    });
    if (entries.some((e) => e.key === networkKey(draft.name)))
      throw conflict("name", `network "${draft.name}" already exists in the cluster`);
    for (const other of others)
      for (const theirs of other.subnets)
        for (const mine of subnets)
          if (cidrsOverlap(mine, parseSubnet(theirs.cidr, "subnet")))
            throw conflict(
              "subnet",
              `${mine.text} overlaps overlay network "${other.name}" (${theirs.cidr})`,
            );
    const vni = draft.vni ?? lowestFreeVni(others.map((o) => o.vni));
    if (others.some((o) => o.vni === vni))
      throw conflict(
        "vni",
        `VNI ${vni} is taken by overlay network "${others.find((o) => o.vni === vni)!.name}"`,
      );
    const record: OverlayNetwork = { ...draft, vni };
    const key = networkKey(draft.name);
    if (
      await etcd.commit(
        [
          { key, modRevision: "0" },
          { prefix: NETWORKS, unchangedSince: revision },
        ],
        [{ put: key, value: JSON.stringify(record) }],
      )
    )
      return record;
    if (attempt >= ATTEMPTS)
      throw conflict(
        "network",
        "overlay networks kept changing in etcd while this one was created; try again",
      );
  }
}

export function lowestFreeVni(taken: readonly number[]): number {
  const used = new Set(taken);
  for (let vni = 1; vni <= MAX_VNI; vni++) if (!used.has(vni)) return vni;
  throw new NetctxError("exhausted", "every VXLAN network identifier is taken", "vni");
}

/**
 * Deletes an overlay network in etcd, refused while any node holds a block of it (its addresses may be in use there:
 * a node gives a block back when its last address in it is released). `local`: blocks of this node that hold no
 * lease here, deleted in the same transaction.
 */
export async function removeOverlayNetwork(
  etcd: Etcd,
  name: string,
  self: string,
  idle: (cidr: string) => boolean,
): Promise<OverlayNetwork> {
  for (let attempt = 1; ; attempt++) {
    const found = await etcd.get(networkKey(name));
    const record = found && parseOverlayNetwork(found.value);
    if (!found || !record) throw notFound("network", name);
    const blocks = await networkBlocks(etcd, name);
    const ours = blocks.filter((b) => b.record.node === self && idle(b.record.cidr));
    const held = blocks.filter((b) => !ours.includes(b));
    if (held.length > 0) {
      const shown = held.slice(0, 4).map((b) => `${b.record.cidr} (node ${b.record.node})`);
      if (held.length > 4) shown.push(`and ${held.length - 4} more`);
      throw conflict(
        "network",
        `network "${name}" is in use in the cluster: blocks ${shown.join(", ")} are leased (netctx cluster forget NODE frees a gone node's)`,
      );
    }
    if (
      await etcd.commit(
        [{ key: found.key, modRevision: found.modRevision }, ...ours.map((b) => b.entry)],
        [{ delete: found.key }, ...ours.map((b) => ({ delete: b.entry.key }))],
      )
    )
      return record;
    if (attempt >= ATTEMPTS) throw conflict("network", `network "${name}" kept changing in etcd; try again`);
  }
}

export interface BlockEntry {
  entry: Entry;
  record: BlockRecord;
}

/** The blocks of one network (all networks: undefined), as leased in etcd. */
export async function networkBlocks(etcd: Etcd, network?: string): Promise<BlockEntry[]> {
  const entries = await etcd.range(network === undefined ? BLOCKS : networkBlocksPrefix(network));
  return entries.flatMap((entry) => {
    const record = parseBlockRecord(entry.value);
    return record ? [{ entry, record }] : [];
  });
}

/**
 * Leases a free block of `subnet` of `network` for `node`: the lowest one no node holds, in a transaction that fails
 * if another node took it meanwhile or the network was removed (then the next free one is tried).
 */
export async function leaseBlock(
  etcd: Etcd,
  network: string,
  subnet: string,
  node: string,
): Promise<BlockRecord> {
  for (let attempt = 1; ; attempt++) {
    const found = await etcd.get(networkKey(network));
    const record = found && parseOverlayNetwork(found.value);
    if (!found || !record) throw notFound("network", network);
    const spec = record.subnets.find((s) => s.cidr === subnet);
    if (!spec) throw notFound("subnet", `${subnet} of network ${network}`);
    const cidr = parseSubnet(subnet, "subnet");
    const { entries, revision: _ } = await etcd.snapshot(networkBlocksPrefix(network));
    const taken = entries.flatMap((e) => parseBlockRecord(e.value)?.cidr ?? []);
    // After a lost race, start a little further on: the winner is likely to take the next one too.
    const block = freeBlock(cidr, spec.block, taken, attempt === 1 ? 0 : Math.floor(Math.random() * 4));
    if (block === undefined)
      throw new NetctxError(
        "exhausted",
        `network "${network}": every /${spec.block} block of ${subnet} is leased by a node`,
        "block",
      );
    const value: BlockRecord = { node, network, cidr: block, since: new Date().toISOString() };
    const key = blockKey(network, block);
    if (
      await etcd.commit(
        [
          { key: found.key, modRevision: found.modRevision },
          { key, modRevision: "0" },
        ],
        [{ put: key, value: JSON.stringify(value) }],
      )
    )
      return value;
    if (attempt >= ATTEMPTS)
      throw conflict("block", `network "${network}": blocks kept being taken by other nodes; try again`);
  }
}

/**
 * Makes sure etcd says `node` holds `cidr` of `network` (a block this node has addresses in): writes it if no node
 * does (it was freed by `cluster forget` or the grace period while this node had leases), drops an orphan mark.
 * False when another node holds it now.
 */
export async function holdBlock(etcd: Etcd, network: string, cidr: string, node: string): Promise<boolean> {
  const key = blockKey(network, cidr);
  const found = await etcd.get(key);
  const record = found && parseBlockRecord(found.value);
  if (found && record) {
    if (record.node !== node) return false;
    if (record.orphanedSince === undefined) return true;
    const { orphanedSince: _, ...kept } = record;
    return etcd.commit(
      [{ key, modRevision: found.modRevision }],
      [{ put: key, value: JSON.stringify(kept) }],
    );
  }
  const netFound = await etcd.get(networkKey(network));
  if (!netFound) return false;
  const value: BlockRecord = { node, network, cidr, since: new Date().toISOString() };
  return etcd.commit(
    [
      { key: netFound.key, modRevision: netFound.modRevision },
      { key, modRevision: found?.modRevision ?? "0" },
    ],
    [{ put: key, value: JSON.stringify(value) }],
  );
}

/** Gives a block back, if `node` still holds it; true when it is gone from etcd. */
export async function releaseBlock(
  etcd: Etcd,
  network: string,
  cidr: string,
  node: string,
): Promise<boolean> {
  const found = await etcd.get(blockKey(network, cidr));
  if (!found) return true;
  if (parseBlockRecord(found.value)?.node !== node) return false;
  return etcd.deleteIfUnchanged([found]);
}

/**
 * Blocks whose node has no record (its lease ran out): marked with the time they were first found so, and freed
 * once that is more than `graceSeconds` ago. A block whose node is back loses its mark. Returns what was freed.
 */
export async function sweepOrphanBlocks(
  etcd: Etcd,
  alive: ReadonlySet<string>,
  graceSeconds: number,
  now = Date.now(),
): Promise<BlockRecord[]> {
  const freed: BlockRecord[] = [];
  for (const { entry, record } of await networkBlocks(etcd)) {
    const unchanged = [{ key: entry.key, modRevision: entry.modRevision }];
    if (alive.has(record.node)) {
      if (record.orphanedSince === undefined) continue;
      const { orphanedSince: _, ...kept } = record;
      await etcd.commit(unchanged, [{ put: entry.key, value: JSON.stringify(kept) }]);
    } else if (record.orphanedSince === undefined) {
      const marked: BlockRecord = { ...record, orphanedSince: new Date(now).toISOString() };
      await etcd.commit(unchanged, [{ put: entry.key, value: JSON.stringify(marked) }]);
    } else if (now - Date.parse(record.orphanedSince) >= graceSeconds * 1000) {
      if (await etcd.commit(unchanged, [{ delete: entry.key }])) freed.push(record);
    }
  }
  return freed;
}
