/**
 * IP addresses and CIDRs as bigints, v4 and v6 alike, so IPAM and overlap checks use one arithmetic.
 * Parsing is strict: what we store and hand to the kernel is the canonical text (RFC 5952 for v6),
 * and every rejection names the user's field.
 */
import { createHash, randomBytes } from "node:crypto";
import { invalid, NetctxError } from "../errors.ts";

export type Family = 4 | 6;

export interface Cidr {
  family: Family;
  /** The address as given (host bits kept). */
  addr: bigint;
  prefix: number;
  network: bigint;
  /** Canonical text: "10.1.0.0/24" for a subnet, "10.1.0.5/24" for an interface address. */
  text: string;
}

export function familyBits(family: Family): number {
  return family === 4 ? 32 : 128;
}

const V4_OCTET = /^(0|[1-9][0-9]{0,2})$/;
const V6_GROUP = /^[0-9a-fA-F]{1,4}$/;
const PREFIX_RE = /^(0|[1-9][0-9]{0,2})$/;

function parseV4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    // Leading zeros are refused: inet_aton reads "010" as octal 8, so "010.1.0.1" means different things to different tools.
    if (!V4_OCTET.test(part)) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

function parseV6Groups(text: string, dottedTail: boolean): number[] | undefined {
  if (text === "") return [];
  const groups: number[] = [];
  const parts = text.split(":");
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (dottedTail && i === parts.length - 1 && part.includes(".")) {
      const v4 = parseV4(part);
      if (v4 === undefined) return undefined;
      groups.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
    } else {
      if (!V6_GROUP.test(part)) return undefined;
      groups.push(Number.parseInt(part, 16));
    }
  }
  return groups;
}

function parseV6(text: string): bigint | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const head = parseV6Groups(halves[0]!, false);
    const tail = parseV6Groups(halves[1]!, true);
    if (!head || !tail) return undefined;
    // "::" must stand for at least one zero group (RFC 4291 2.2).
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return undefined;
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    const all = parseV6Groups(text, true);
    if (all === undefined) return undefined;
    groups = all;
  }
  if (groups.length !== 8) return undefined;
  let value = 0n;
  for (const g of groups) value = (value << 16n) | BigInt(g);
  return value;
}

function shortText(text: string): string {
  const short = text.length > 80 ? `${text.slice(0, 80)}...` : text;
  // Control characters (a newline above all) would break the one-line error: show them escaped.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
  return short.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => JSON.stringify(c).slice(1, -1));
}

/** Parse a bare address ("10.1.0.5", "FD00::1"); the returned text is canonical. */
export function parseIp(text: string, field: string): { family: Family; addr: bigint; text: string } {
  if (typeof text !== "string" || text.length === 0) throw invalid(field, "an IP address is required");
  if (text.includes(":")) {
    // Zone ids (fe80::1%eth0) name an interface, which an address record cannot carry.
    const addr = text.includes("%") ? undefined : parseV6(text);
    if (addr === undefined) throw invalid(field, `"${shortText(text)}" is not an IPv6 address`);
    return { family: 6, addr, text: formatIp(6, addr) };
  }
  const addr = parseV4(text);
  if (addr === undefined) throw invalid(field, `"${shortText(text)}" is not an IP address`);
  return { family: 4, addr, text: formatIp(4, addr) };
}

function hostMask(family: Family, prefix: number): bigint {
  return (1n << BigInt(familyBits(family) - prefix)) - 1n;
}

/** Parse "ADDRESS/PREFIX"; host bits are kept in `addr`, `network` has them cleared. */
export function parseCidr(text: string, field: string): Cidr {
  if (typeof text !== "string" || text.length === 0) throw invalid(field, "a CIDR is required");
  const slash = text.indexOf("/");
  if (slash < 0 || slash !== text.lastIndexOf("/"))
    throw invalid(field, `"${shortText(text)}" is not a CIDR (expected ADDRESS/PREFIX, e.g. 10.1.0.0/24)`);
  const ip = parseIp(text.slice(0, slash), field);
  const prefixText = text.slice(slash + 1);
  const bits = familyBits(ip.family);
  if (!PREFIX_RE.test(prefixText) || Number(prefixText) > bits)
    throw invalid(
      field,
      `"${shortText(text)}" has an invalid prefix length "/${shortText(prefixText)}" (IPv${ip.family}: 0-${bits})`,
    );
  const prefix = Number(prefixText);
  const network = ip.addr & ~hostMask(ip.family, prefix);
  return { family: ip.family, addr: ip.addr, prefix, network, text: `${ip.text}/${prefix}` };
}

/** "ADDRESS/PREFIX" written the one way (host bits kept), as the kernel's dumps print it: for comparing. */
export function canonicalCidr(text: string): string {
  const c = parseCidr(text, "address");
  return `${formatIp(c.family, c.addr)}/${c.prefix}`;
}

/** A subnet: host bits must be zero, so "10.1.0.5/24" is refused with a hint. */
export function parseSubnet(text: string, field: string): Cidr {
  const c = parseCidr(text, field);
  if (c.addr !== c.network)
    throw invalid(
      field,
      `${text} has host bits set (did you mean ${formatIp(c.family, c.network)}/${c.prefix}?)`,
    );
  return c;
}

/** An address on an interface: host bits are the point ("10.1.0.5/24"). */
export function parseInterfaceAddress(text: string, field: string): Cidr {
  return parseCidr(text, field);
}

export function formatIp(family: Family, addr: bigint): string {
  if (addr < 0n || addr >> BigInt(familyBits(family)) !== 0n)
    throw new NetctxError("internal", `address value ${addr} does not fit IPv${family}`);
  const bytes = ipBytes({ family, addr });
  return formatIpBytes(bytes, 0, bytes.length);
}

/**
 * An address as the kernel holds it (4 or 16 bytes in network order at buf[o]) in text: dotted quad, or RFC 5952
 * (lowercase, no leading zeros, the longest run of two or more zero groups as "::", the first on a tie, IPv4-mapped
 * addresses with their dotted tail as inet_ntop and iproute2 print them). Numbers, not bigints: netlink dumps call
 * this for every address they carry.
 */
export function formatIpBytes(buf: Uint8Array, o: number, len: number): string {
  if (len === 4) return `${buf[o]}.${buf[o + 1]}.${buf[o + 2]}.${buf[o + 3]}`;
  if (len !== 16) return Buffer.from(buf.subarray(o, o + len)).toString("hex");
  if (buf.subarray(o, o + 10).every((b) => b === 0) && buf[o + 10] === 0xff && buf[o + 11] === 0xff)
    return `::ffff:${formatIpBytes(buf, o + 12, 4)}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(((buf[o + 2 * i] ?? 0) << 8) | (buf[o + 2 * i + 1] ?? 0));
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(":");
  if (bestAt < 0) return hex(g);
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`;
}

/** The address in network byte order: 4 or 16 bytes, as the kernel's structs and packet headers hold it. */
export function ipBytes(ip: { family: Family; addr: bigint }): Uint8Array {
  const bytes = new Uint8Array(familyBits(ip.family) / 8);
  for (let i = 0; i < bytes.length; i++)
    bytes[i] = Number((ip.addr >> BigInt(8 * (bytes.length - 1 - i))) & 0xffn);
  return bytes;
}

export function cidrContains(c: Cidr, family: Family, addr: bigint): boolean {
  if (c.family !== family) return false;
  return (addr & ~hostMask(family, c.prefix)) === c.network;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const shorter = Math.min(a.prefix, b.prefix);
  const mask = ~hostMask(a.family, shorter);
  return (a.network & mask) === (b.network & mask);
}

/** network + n; no bounds check, so callers compare with lastAddress() when n may overflow the subnet. */
export function hostAt(c: Cidr, n: bigint): bigint {
  return c.network + n;
}

export function lastAddress(c: Cidr): bigint {
  return c.network | hostMask(c.family, c.prefix);
}

export function addressCount(c: Cidr): bigint {
  return 1n << BigInt(familyBits(c.family) - c.prefix);
}

/** The subnet's canonical "network/prefix" text, whatever host bits `c` carries. */
export function subnetText(c: Cidr): string {
  return `${formatIp(c.family, c.network)}/${c.prefix}`;
}

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/** Why `text` cannot be an interface's MAC address, or undefined when it can. */
export function macProblem(text: string): string | undefined {
  if (!MAC_RE.test(text))
    return `"${shortText(text)}" is not a MAC address (expected six hex pairs like 02:42:ac:11:00:02)`;
  const first = Number.parseInt(text.slice(0, 2), 16);
  // The kernel refuses these for a device address with EADDRNOTAVAIL (is_valid_ether_addr).
  if (first & 1) return `${text} is a multicast MAC address`;
  if (/^(00:){5}00$/.test(text)) return `${text} is the all-zero MAC address`;
  return undefined;
}

/** A random locally administered unicast MAC, as the kernel's eth_random_addr() makes them. */
export function randomMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = (bytes[0]! & 0xfe) | 0x02;
  return macText(bytes);
}

/** A locally administered unicast MAC that is always the same for `seed` (a bridge's, from its network's name). */
export function stableMac(seed: string): string {
  const h = createHash("sha256").update(seed).digest();
  return macText([0x02, ...h.subarray(0, 5)]);
}

function macText(bytes: Iterable<number>): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(":");
}

/** The EUI-64 link-local address the kernel derives from a MAC (addr_gen_mode eui64, the default). */
export function linkLocalOf(mac: string): string {
  const b = mac.split(":").map((h) => Number.parseInt(h, 16));
  if (b.length !== 6 || b.some((n) => !(n >= 0 && n <= 255))) throw new Error(`bad MAC ${mac}`);
  const bytes = [b[0]! ^ 2, b[1]!, b[2]!, 0xff, 0xfe, b[3]!, b[4]!, b[5]!];
  const groups = [0, 2, 4, 6].map((i) => ((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return `fe80::${groups.join(":")}`;
}

/** A unicast, non-zero MAC in colon form, i.e. one the kernel accepts as a device address. */
export function isValidMac(text: string): boolean {
  return macProblem(text) === undefined;
}
