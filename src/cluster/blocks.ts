/**
 * Address blocks of an overlay network (Calico's IPAM blocks): each subnet is cut into aligned blocks of one length
 * per family, and a node allocates only inside the blocks it leased in etcd. Since every block of a network has the
 * same length and is aligned to it, two different blocks never overlap: a create-if-absent on the block's key
 * (keys.ts) is all it takes for two nodes never to hold one address. Pure arithmetic, no etcd.
 */
import { invalid } from "../errors.ts";
import { type Cidr, cidrContains, familyBits, formatIp, parseIp, parseSubnet } from "../net/cidr.ts";

/** The defaults: a /24 of IPv4 (254 contexts per block) and a /64 of IPv6. */
export const DEFAULT_BLOCK = { 4: 24, 6: 64 } as const;
/** The longest block: room for a gateway and at least one context. */
const LONGEST = { 4: 30, 6: 126 } as const;

/**
 * The block length for a subnet: `requested` (--block, IPv4 only) or the default; a subnet too small for four
 * default blocks gets blocks 2 bits longer than itself, so a /24 subnet still serves four nodes.
 */
export function blockLength(subnet: Cidr, requested?: number): number {
  if (requested !== undefined && subnet.family === 4) {
    if (!Number.isInteger(requested) || requested < subnet.prefix || requested > LONGEST[4])
      throw invalid(
        "block",
        `/${requested} does not fit ${subnet.text}: a block is /${subnet.prefix} to /${LONGEST[4]}`,
      );
    return requested;
  }
  const preferred = DEFAULT_BLOCK[subnet.family];
  if (subnet.prefix + 2 <= preferred) return preferred;
  if (subnet.prefix > LONGEST[subnet.family])
    throw invalid("subnet", `${subnet.text} is too small to be cut into blocks`);
  return Math.min(subnet.prefix + 2, LONGEST[subnet.family]);
}

/** How many blocks of `length` a subnet holds. */
export function blockCount(subnet: Cidr, length: number): bigint {
  return 1n << BigInt(length - subnet.prefix);
}

/** The index-th block of `length` in the subnet ("10.88.3.0/24"). */
export function blockAt(subnet: Cidr, length: number, index: bigint): string {
  const size = 1n << BigInt(familyBits(subnet.family) - length);
  return `${formatIp(subnet.family, subnet.network + index * size)}/${length}`;
}

/**
 * The lowest block of the subnet that is not in `taken` (blocks of every node, as CIDR texts), or undefined when
 * all are taken. `skip`: the number of free blocks to pass over first, so nodes racing for a block can spread out
 * instead of all trying the same one.
 */
export function freeBlock(
  subnet: Cidr,
  length: number,
  taken: Iterable<string>,
  skip = 0,
): string | undefined {
  const used = new Set<string>();
  for (const t of taken) used.add(parseSubnet(t, "block").text);
  const count = blockCount(subnet, length);
  let first: string | undefined;
  let passed = 0;
  for (let i = 0n; i < count; i++) {
    const block = blockAt(subnet, length, i);
    if (used.has(block)) continue;
    first ??= block;
    if (passed++ >= skip) return block;
    // Past a few thousand blocks the scan costs more than a retry would.
    if (i > 4096n) break;
  }
  return first;
}

/** The gateway of a block: its first host address, held by the node's device for the network (nc-NAME). */
export function blockGateway(block: string): string {
  const c = parseSubnet(block, "block");
  return formatIp(c.family, c.network + 1n);
}

/** Whether `address` (with or without a prefix) lies inside `block`. */
export function blockHolds(block: string, address: string): boolean {
  const c = parseSubnet(block, "block");
  const ip = parseIp(address.split("/")[0]!, "address");
  return cidrContains(c, ip.family, ip.addr);
}

/** The subnet (of `subnets`) a block lies in, or undefined. */
export function subnetOfBlock(subnets: readonly string[], block: string): string | undefined {
  const b = parseSubnet(block, "block");
  return subnets.find((s) => {
    const c = parseSubnet(s, "subnet");
    return c.family === b.family && c.prefix <= b.prefix && cidrContains(c, b.family, b.network);
  });
}
