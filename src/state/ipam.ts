/**
 * Address management: one lease per subnet of a network, requested or automatic. Callers run this inside a
 * write transaction, so the read of free addresses and the insert cannot interleave with another process.
 */
import { conflict, invalid, NetctxError } from "../errors.ts";
import type { Lease } from "../model/records.ts";
import { type Cidr, cidrContains, formatIp, lastAddress, parseIp, parseSubnet } from "../net/cidr.ts";
import type { Sqlite } from "./db.ts";

/** 32 hex digits: text order equals numeric order, which SQLite's INTEGER (64-bit) cannot give for v6. */
export function addrKey(addr: bigint): string {
  return addr.toString(16).padStart(32, "0");
}

function keyAddr(key: string): bigint {
  return BigInt(`0x${key}`);
}

/** RFC 3021 /31 and single-address subnets have no network or broadcast address to spare; v6 likewise at /127. */
function isPointToPoint(c: Cidr): boolean {
  return c.prefix >= (c.family === 4 ? 31 : 127);
}

/** First and last address IPAM may hand out (the gateway aside). */
export function usableRange(c: Cidr): { first: bigint; last: bigint } {
  if (isPointToPoint(c)) return { first: c.network, last: lastAddress(c) };
  // v6 has no broadcast, but its network address is the subnet-router anycast address (RFC 4291 2.6.1).
  return { first: c.network + 1n, last: lastAddress(c) - (c.family === 4 ? 1n : 0n) };
}

interface SubnetRow {
  cidr: string;
  gateway: string | null;
  free_hint: string | null;
}

interface Pool {
  cidr: Cidr;
  text: string;
  gateway: bigint | undefined;
  hint: string | null;
  /**
   * A cluster-scoped network's: the blocks of this subnet this node holds, the only ranges it allocates from
   * (model/records.ts ClusterScope); undefined for a local network.
   */
  blocks?: Block[];
}

interface Block {
  cidr: Cidr;
  gateway: bigint;
}

/**
 * A cluster-scoped network has no room for an address in the blocks this node holds: the engine leases another
 * block of `subnet` in etcd and tries again (engine/overlay.ts). Without an engine that can, the user sees the line.
 */
export class BlockNeeded extends NetctxError {
  constructor(
    readonly network: string,
    readonly subnet: string,
    message: string,
  ) {
    super("exhausted", message, "block");
  }
}

export class Ipam {
  private readonly subnets;
  private readonly holder;
  private readonly takenFrom;
  private readonly insert;
  private readonly setHint;
  private readonly ownerHas;
  private readonly clusterOf;

  constructor(db: Sqlite) {
    this.clusterOf = db
      .prepare<[string], string | null>("SELECT cluster FROM networks WHERE name = ?")
      .pluck();
    this.subnets = db.prepare<[string], SubnetRow>(
      "SELECT cidr, gateway, free_hint FROM subnets WHERE network = ? ORDER BY position",
    );
    this.holder = db
      .prepare<[string, string], string>("SELECT owner FROM leases WHERE network = ? AND addr_key = ?")
      .pluck();
    this.takenFrom = db
      .prepare<[string, string, string], string>(
        "SELECT addr_key FROM leases WHERE network = ? AND subnet = ? AND addr_key >= ? ORDER BY addr_key",
      )
      .pluck();
    this.insert = db.prepare<[string, string, string, string, string, string]>(
      "INSERT INTO leases (network, subnet, address, addr_key, owner, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    );
    this.setHint = db.prepare<[string, string, string]>(
      "UPDATE subnets SET free_hint = ? WHERE network = ? AND cidr = ?",
    );
    // Left to itself, SQLite serves the ORDER BY from leases_by_subnet and reads every lease of the network:
    // O(contexts) per allocation. An owner holds a lease or two; sorting them is free.
    this.ownerHas = db
      .prepare<[string, string], string>(
        "SELECT address FROM leases INDEXED BY leases_by_owner WHERE network = ? AND owner = ? ORDER BY subnet, addr_key",
      )
      .pluck();
  }

  /** The network must exist; the caller checked it (and holds the write transaction). */
  allocate(network: string, owner: string, requested: readonly string[]): Lease[] {
    if (owner.length === 0) throw invalid("owner", "a lease owner is required");
    const held = this.ownerHas.all(network, owner);
    if (held.length > 0)
      throw conflict("owner", `"${owner}" already holds ${held.join(", ")} on network "${network}"`);
    const pools = this.subnets.all(network).map((row): Pool => {
      const cidr = parseSubnet(row.cidr, "subnet");
      return {
        cidr,
        text: row.cidr,
        gateway: row.gateway === null ? undefined : parseIp(row.gateway, "gateway").addr,
        hint: row.free_hint,
      };
    });
    if (pools.length === 0) throw invalid("network", `network "${network}" has no subnets to allocate from`);
    this.addBlocks(network, pools);
    const wanted = this.assignRequested(network, pools, requested);
    const now = new Date().toISOString();
    return pools.map((pool, i) => {
      const want = wanted.get(i);
      if (pool.blocks) {
        const { addr, block } =
          want === undefined
            ? this.pickInBlocks(network, pool, pool.blocks)
            : this.checkInBlocks(network, pool, want);
        const address = formatIp(pool.cidr.family, addr);
        this.insert.run(network, pool.text, address, addrKey(addr), owner, now);
        const gateway = formatIp(pool.cidr.family, block.gateway);
        return { network, subnet: pool.text, address, prefix: block.cidr.prefix, owner, gateway };
      }
      const addr =
        want === undefined ? this.pickFree(network, pool) : this.checkRequested(network, pool, want);
      const address = formatIp(pool.cidr.family, addr);
      this.insert.run(network, pool.text, address, addrKey(addr), owner, now);
      return { network, subnet: pool.text, address, prefix: pool.cidr.prefix, owner };
    });
  }

  /** A cluster-scoped network's pools get the blocks this node holds in them. */
  private addBlocks(network: string, pools: Pool[]): void {
    const text = this.clusterOf.get(network);
    if (text === null || text === undefined) return;
    const held = (JSON.parse(text) as { blocks?: { cidr: string; gateway: string }[] }).blocks ?? [];
    const blocks = held.map((b) => ({
      cidr: parseSubnet(b.cidr, "block"),
      gateway: parseIp(b.gateway, "gateway").addr,
    }));
    for (const pool of pools)
      pool.blocks = blocks.filter((b) => cidrContains(pool.cidr, b.cidr.family, b.cidr.network));
  }

  /** The lowest free address of the first block with room; none: NEEDS_BLOCK, for the engine to lease one. */
  private pickInBlocks(
    network: string,
    pool: Pool,
    blocks: readonly Block[],
  ): { addr: bigint; block: Block } {
    for (const block of blocks) {
      const { first, last } = usableRange(block.cidr);
      let cand = first;
      if (cand === block.gateway) cand++;
      let candKey = addrKey(cand);
      for (const key of this.takenFrom.iterate(network, pool.text, candKey)) {
        if (key > candKey || cand > last) break;
        cand++;
        if (cand === block.gateway) cand++;
        candKey = addrKey(cand);
      }
      if (cand <= last) return { addr: cand, block };
    }
    throw new BlockNeeded(
      network,
      pool.text,
      blocks.length === 0
        ? `network "${network}": this node holds no address block of ${pool.text} yet (the engine leases one in etcd)`
        : `network "${network}": this node's address blocks of ${pool.text} are full (the engine leases another in etcd)`,
    );
  }

  /** A requested address of a cluster-scoped network must lie in a block this node holds. */
  private checkInBlocks(network: string, pool: Pool, addr: bigint): { addr: bigint; block: Block } {
    const text = formatIp(pool.cidr.family, addr);
    const block = pool.blocks?.find((b) => cidrContains(b.cidr, pool.cidr.family, addr));
    if (!block)
      throw conflict(
        "ip",
        `${text} is in no address block this node holds on network "${network}" (blocks: ${pool.blocks?.map((b) => b.cidr.text).join(", ") || "none"})`,
      );
    const { first, last } = usableRange(block.cidr);
    if (addr < first || addr > last || addr === block.gateway)
      throw invalid("ip", `${text} is the network, broadcast or gateway address of block ${block.cidr.text}`);
    const owner = this.holder.get(network, addrKey(addr));
    if (owner !== undefined) throw conflict("ip", `${text} is already in use by "${owner}"`);
    return { addr, block };
  }

  /** Maps each requested address to the index of the subnet that contains it. */
  private assignRequested(network: string, pools: Pool[], requested: readonly string[]): Map<number, bigint> {
    const wanted = new Map<number, bigint>();
    for (const text of requested) {
      const ip = parseIp(text, "ip");
      const i = pools.findIndex((p) => cidrContains(p.cidr, ip.family, ip.addr));
      const pool = pools[i];
      if (pool === undefined)
        throw invalid(
          "ip",
          `${ip.text} is outside the subnets of network "${network}" (${pools.map((p) => p.text).join(", ")})`,
        );
      const earlier = wanted.get(i);
      if (earlier !== undefined)
        throw invalid(
          "ip",
          earlier === ip.addr
            ? `${ip.text} is requested twice`
            : `${formatIp(ip.family, earlier)} and ${ip.text} are both in ${pool.text} of network "${network}": one address per subnet`,
        );
      wanted.set(i, ip.addr);
    }
    return wanted;
  }

  private checkRequested(network: string, pool: Pool, addr: bigint): bigint {
    const { cidr } = pool;
    const text = formatIp(cidr.family, addr);
    const { first, last } = usableRange(cidr);
    if (addr < first) throw invalid("ip", `${text} is the network address of ${pool.text}`);
    if (addr > last) throw invalid("ip", `${text} is the broadcast address of ${pool.text}`);
    if (addr === pool.gateway) throw invalid("ip", `${text} is the gateway of network "${network}"`);
    const owner = this.holder.get(network, addrKey(addr));
    if (owner !== undefined) throw conflict("ip", `${text} is already in use by "${owner}"`);
    return addr;
  }

  /** The lowest free address, scanning forward from the subnet's hint over the (sorted) leases only. */
  private pickFree(network: string, pool: Pool): bigint {
    const { first, last } = usableRange(pool.cidr);
    let cand = first;
    if (pool.hint !== null) {
      const hint = keyAddr(pool.hint);
      if (hint > cand) cand = hint;
    }
    const skipGateway = () => {
      if (cand === pool.gateway) cand++;
    };
    skipGateway();
    let candKey = addrKey(cand);
    for (const key of this.takenFrom.iterate(network, pool.text, candKey)) {
      if (key > candKey) break;
      if (key === candKey) {
        cand++;
        skipGateway();
        candKey = addrKey(cand);
      }
    }
    if (cand > last) throw exhausted(network, pool.text);
    this.setHint.run(addrKey(cand < last ? cand + 1n : last), network, pool.text);
    return cand;
  }
}

function exhausted(network: string, subnet: string): NetctxError {
  return new NetctxError("exhausted", `network "${network}": no free address left in ${subnet}`, "ip");
}
