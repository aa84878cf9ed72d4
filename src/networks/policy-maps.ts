/**
 * PolicyTables (model/policy-tables.ts) as the entries of the policy data path's maps for one generation
 * (kernel/bpf/policy-program.ts has the layouts), checked first: a bad table is refused before anything is written.
 */
import { invalid } from "../errors.ts";
import {
  ADDRESS_KEY_SIZE,
  addressLayout,
  FLAG_EGRESS_SELECTED,
  FLAG_GATEWAY,
  FLAG_INGRESS_SELECTED,
  PORT_KEY_SIZE,
  stateValueSize,
} from "../kernel/bpf/policy-program.ts";
import { MAX_POLICIES, POLICY_WORDS, type PolicyTables } from "../model/policy-tables.ts";
import { ipBytes, parseCidr } from "../net/cidr.ts";

export type Generation = 1 | 2;

/** One generation's entries, keyed by the key's hex (for diffing against what a map holds). */
export interface GenerationEntries {
  addresses: Map<string, Uint8Array>;
  ports: Map<string, Uint8Array>;
  anyPort: Uint8Array;
}

const PROTO = { tcp: 6, udp: 17 } as const;
const LIMIT = 1n << BigInt(MAX_POLICIES);

export const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
export const fromHex = (text: string) => new Uint8Array(Buffer.from(text, "hex"));

function words(bits: bigint, field: string): Uint8Array {
  if (bits < 0n || bits >= LIMIT) throw invalid(field, `policy bits must be within 0 .. 2^${MAX_POLICIES}-1`);
  const out = new Uint8Array(POLICY_WORDS * 8);
  const view = new DataView(out.buffer);
  for (let w = 0; w < POLICY_WORDS; w++)
    view.setBigUint64(8 * w, (bits >> BigInt(64 * w)) & 0xffffffffffffffffn, true);
  return out;
}

/** LPM key: prefixlen u32 (32 + the address's), generation u8, family u8, 0 u16, the network's 16 bytes. */
export function addressKey(gen: number, cidr: string, field: string): Uint8Array {
  const c = parseCidr(cidr, field);
  const key = new Uint8Array(ADDRESS_KEY_SIZE);
  const view = new DataView(key.buffer);
  view.setUint32(0, 32 + c.prefix, true);
  key[4] = gen;
  key[5] = c.family;
  key.set(ipBytes({ family: c.family, addr: c.network }), 8);
  return key;
}

/** The generation a key of the address or port map belongs to. */
export const addressKeyGeneration = (key: Uint8Array) => key[4]!;
export const portKeyGeneration = (key: Uint8Array) => key[0]!;

export function portKey(gen: number, proto: "tcp" | "udp", port: number): Uint8Array {
  const key = new Uint8Array(PORT_KEY_SIZE);
  key[0] = gen;
  key[1] = PROTO[proto];
  new DataView(key.buffer).setUint16(2, port, false);
  return key;
}

/** What generation `gen` of the maps must hold for `tables`. */
export function generationEntries(tables: PolicyTables, gen: Generation): GenerationEntries {
  const L = addressLayout(POLICY_WORDS);
  const addresses = new Map<string, Uint8Array>();
  tables.addresses.forEach((e, i) => {
    const field = `addresses[${i}]`;
    const value = new Uint8Array(L.size);
    const view = new DataView(value.buffer);
    value.set(words(e.ingressFrom, `${field}.ingressFrom`), L.ingressFrom);
    value.set(words(e.ingressTo, `${field}.ingressTo`), L.ingressTo);
    value.set(words(e.egressFrom, `${field}.egressFrom`), L.egressFrom);
    value.set(words(e.egressTo, `${field}.egressTo`), L.egressTo);
    const flags =
      (e.ingressSelected ? FLAG_INGRESS_SELECTED : 0) |
      (e.egressSelected ? FLAG_EGRESS_SELECTED : 0) |
      (e.gateway ? FLAG_GATEWAY : 0);
    view.setUint32(L.flags, flags, true);
    if (!Number.isInteger(e.isolateGroup) || e.isolateGroup < 0 || e.isolateGroup > 0xffffffff)
      throw invalid(`${field}.isolateGroup`, `${e.isolateGroup} is not a 32-bit unsigned integer`);
    view.setUint32(L.isolateGroup, e.isolateGroup, true);
    const key = hex(addressKey(gen, e.cidr, `${field}.cidr`));
    if (addresses.has(key)) throw invalid(`${field}.cidr`, `${e.cidr} is in the table twice`);
    addresses.set(key, value);
  });
  // Every lookup finds an entry: an address no entry covers gets the zero one ("every field zero or false").
  for (const world of ["0.0.0.0/0", "::/0"]) {
    const key = hex(addressKey(gen, world, "addresses"));
    if (!addresses.has(key)) addresses.set(key, new Uint8Array(L.size));
  }
  const ports = new Map<string, Uint8Array>();
  tables.ports.forEach((p, i) => {
    const field = `ports[${i}]`;
    if (p.proto !== "tcp" && p.proto !== "udp")
      throw invalid(`${field}.proto`, `"${p.proto}" is not tcp or udp`);
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535)
      throw invalid(`${field}.port`, `${p.port} is not a port (1-65535)`);
    const key = hex(portKey(gen, p.proto, p.port));
    if (ports.has(key)) throw invalid(`${field}.port`, `${p.proto} ${p.port} is in the table twice`);
    ports.set(key, words(p.bits, `${field}.bits`));
  });
  const anyPort = new Uint8Array(stateValueSize(POLICY_WORDS));
  anyPort.set(words(tables.anyPort, "anyPort"));
  return { addresses, ports, anyPort };
}

/**
 * Nobody selected and nobody isolated (OPEN_TABLES, or policies that select no context yet): the rule allows every
 * packet, so the data path may pass everything after its first lookup.
 */
export function isOpen(tables: PolicyTables): boolean {
  return tables.addresses.every((e) => !e.ingressSelected && !e.egressSelected && e.isolateGroup === 0);
}
