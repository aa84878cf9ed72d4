/**
 * The policy data path's maps (kernel/bpf/policy-program.ts has their layouts): made, and brought to PolicyTables
 * (model/policy-tables.ts) in two generations. Tables are checked first: a bad one is refused before anything is
 * written.
 */
import { invalid, NetctxError } from "../errors.ts";
import { createMap, MapType, mapDelete, mapEntries, mapLookup, mapUpdate } from "../kernel/bpf/maps.ts";
import {
  ADDRESS_KEY_SIZE,
  addressLayout,
  CONNECTION_KEY_SIZE,
  CONNECTION_VALUE_SIZE,
  FLAG_EGRESS_SELECTED,
  FLAG_GATEWAY,
  FLAG_INGRESS_SELECTED,
  POLICY_MAP_NAMES,
  PORT_KEY_SIZE,
  type PolicyMapFds,
  STATE_ENTRIES,
  stateValueSize,
} from "../kernel/bpf/policy-program.ts";
import { closeFd } from "../kernel/bpf/syscall.ts";
import { KernelError } from "../kernel/errors.ts";
import { type AddressEntry, MAX_POLICIES, POLICY_WORDS, type PolicyTables } from "../model/policy-tables.ts";
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

/** An address entry's key (hex) and value as encoded before, by the entry's fields and generation. */
export type EncodedAddresses = Map<string, [string, Uint8Array]>;

/** The same, by the entry object (tables are not changed once compiled), per generation. */
const encodedEntries = new WeakMap<AddressEntry, Partial<Record<Generation, [string, Uint8Array]>>>();

/**
 * What generation `gen` of the maps must hold for `tables`. `encoded`: entries encoded by earlier calls (a create
 * changes one entry of a hundred, and encoding all of them was most of a write); entries are added to it.
 */
export function generationEntries(
  tables: PolicyTables,
  gen: Generation,
  encoded: EncodedAddresses = new Map(),
): GenerationEntries {
  const L = addressLayout(POLICY_WORDS);
  const addresses = new Map<string, Uint8Array>();
  tables.addresses.forEach((e, i) => {
    // The incremental compile hands the unchanged entries on as the same objects: known without a signature.
    const byObject = encodedEntries.get(e);
    const signature =
      byObject?.[gen] === undefined
        ? `${gen} ${e.cidr} ${e.ingressFrom} ${e.ingressTo} ${e.egressFrom} ${e.egressTo} ${e.ingressSelected} ${e.egressSelected} ${e.gateway} ${e.isolateGroup}`
        : "";
    const known = byObject?.[gen] ?? encoded.get(signature);
    if (known) {
      if (addresses.has(known[0])) throw invalid(`addresses[${i}].cidr`, `${e.cidr} is in the table twice`);
      addresses.set(known[0], known[1]);
      encodedEntries.set(e, { ...byObject, [gen]: known });
      return;
    }
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
    encoded.set(signature, [key, value]);
    encodedEntries.set(e, { ...byObject, [gen]: [key, value] });
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

const ADDRESS_ENTRIES = 65536;
/** Entries allocated as they are added: the table is usually small. */
const BPF_F_NO_PREALLOC = 1;
const PORT_ENTRIES = 65536;
/** Preallocated (an LRU hash always is): about 100 bytes an entry. */
const CONNECTION_ENTRIES = 65536;
const ADDRESS_VALUE = addressLayout(POLICY_WORDS).size;
const PORT_VALUE = POLICY_WORDS * 8;
const STATE_VALUE = stateValueSize(POLICY_WORDS);

/** What a refusal of the kernel means for the policy data path, naming the feature. */
export function unsupported(feature: string, err: KernelError): NetctxError {
  return new NetctxError(
    "unsupported",
    `policy data path: the kernel refused ${feature} (${err.message.split("\n")[0]})`,
  );
}

export function createPolicyMaps(): PolicyMapFds {
  const made: number[] = [];
  const make = (feature: string, spec: Parameters<typeof createMap>[0]) => {
    try {
      const fd = createMap(spec);
      made.push(fd);
      return fd;
    } catch (err) {
      for (const fd of made) closeFd(fd);
      if (err instanceof KernelError) throw unsupported(feature, err);
      throw err;
    }
  };
  return {
    state: make("a BPF array map", {
      name: POLICY_MAP_NAMES.state,
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: STATE_VALUE,
      maxEntries: STATE_ENTRIES,
    }),
    addresses: make("a BPF LPM trie map (Linux 4.11+)", {
      name: POLICY_MAP_NAMES.addresses,
      type: MapType.LPM_TRIE,
      keySize: ADDRESS_KEY_SIZE,
      valueSize: ADDRESS_VALUE,
      maxEntries: ADDRESS_ENTRIES,
    }),
    ports: make("a BPF hash map", {
      name: POLICY_MAP_NAMES.ports,
      type: MapType.HASH,
      keySize: PORT_KEY_SIZE,
      valueSize: PORT_VALUE,
      maxEntries: PORT_ENTRIES,
      flags: BPF_F_NO_PREALLOC,
    }),
    connections: make("a BPF LRU hash map (Linux 4.10+)", {
      name: POLICY_MAP_NAMES.connections,
      type: MapType.LRU_HASH,
      keySize: CONNECTION_KEY_SIZE,
      valueSize: CONNECTION_VALUE_SIZE,
      maxEntries: CONNECTION_ENTRIES,
    }),
  };
}

function stateKey(index: number): Uint8Array {
  const key = new Uint8Array(4);
  new DataView(key.buffer).setUint32(0, index, true);
  return key;
}

/**
 * Entry 0 of the state array: the active generation (u32 @0, 0 = open: no policy selects anybody), which is all the
 * program reads, and a write serial (u32 @4) that every write bumps with the same update.
 */
interface StateHead {
  gen: number;
  serial: number;
}

function readHead(maps: PolicyMapFds): StateHead {
  const value = mapLookup(maps.state, stateKey(0), STATE_VALUE);
  if (!value) return { gen: 0, serial: 0 };
  const view = new DataView(value.buffer, value.byteOffset);
  return { gen: view.getUint32(0, true), serial: view.getUint32(4, true) };
}

/** The active generation: 0 = open (no policy selects anybody). */
export function activeGeneration(maps: PolicyMapFds): number {
  return readHead(maps).gen;
}

function writeHead(maps: PolicyMapFds, head: StateHead): void {
  const value = new Uint8Array(STATE_VALUE);
  const view = new DataView(value.buffer);
  view.setUint32(0, head.gen, true);
  view.setUint32(4, head.serial, true);
  mapUpdate(maps.state, stateKey(0), value);
}

/** One generation's entries as hex, key -> value. */
interface Written {
  addresses: Map<string, string>;
  ports: Map<string, string>;
}

/**
 * What this process last wrote into each generation, and the serial its last write left: while the state array
 * still holds that serial nobody else wrote since, and a write diffs against this instead of reading the maps back
 * (walking an LPM trie costs a traversal per key: ~3 ms at 100 contexts, on every create and rm).
 */
export interface WriteCache {
  serial: number | undefined;
  generations: Map<number, Written>;
  /** Address entries as encoded for earlier writes (see generationEntries). */
  encoded: EncodedAddresses;
}

export function newWriteCache(): WriteCache {
  return { serial: undefined, generations: new Map(), encoded: new Map() };
}

function readGeneration(
  mapFd: number,
  keySize: number,
  valueSize: number,
  generationOf: (key: Uint8Array) => number,
  gen: number,
): Map<string, string> {
  const have = new Map<string, string>();
  for (const [k, v] of mapEntries(mapFd, keySize, valueSize))
    if (generationOf(k) === gen) have.set(hex(k), hex(v));
  return have;
}

/** Values come from generationEntries' cache, the same arrays write after write: their hex is kept with them. */
const hexOfValue = new WeakMap<Uint8Array, string>();

function valueHex(v: Uint8Array): string {
  let text = hexOfValue.get(v);
  if (text === undefined) {
    text = hex(v);
    hexOfValue.set(v, text);
  }
  return text;
}

/** Bring generation `gen` of one map from `have` to `want`: update what differs, delete what is not wanted. */
function sync(mapFd: number, have: Map<string, string>, want: Map<string, Uint8Array>): Map<string, string> {
  const now = new Map<string, string>();
  for (const [k, v] of want) {
    const text = valueHex(v);
    if (have.get(k) !== text) mapUpdate(mapFd, fromHex(k), v);
    now.set(k, text);
  }
  for (const k of have.keys()) if (!want.has(k)) mapDelete(mapFd, fromHex(k));
  return now;
}

/**
 * Bring the maps to `tables`: the inactive generation is brought to them entry by entry, then one update of the
 * state array makes it the active one (or generation 0 when the tables are open), so no packet meets a half-written
 * table. Refuses bad tables (invalid, naming the field) before writing anything. `cache`: the process's own record
 * of what it wrote (see WriteCache); without it the inactive generation is read back from the maps. Returns the
 * generation that was active before (0: the tables were open).
 */
export function writeTables(
  maps: PolicyMapFds,
  tables: PolicyTables,
  cache: WriteCache = newWriteCache(),
): number {
  const head = readHead(maps);
  const target: Generation = head.gen === 1 ? 2 : 1;
  // Entries of contexts long gone would pile up: start again once it holds several tables' worth.
  if (cache.encoded.size > 4 * tables.addresses.length + 64) cache.encoded.clear();
  const entries = generationEntries(tables, target, cache.encoded);
  const serial = (head.serial + 1) >>> 0;
  if (cache.serial !== head.serial) cache.generations.clear();
  if (isOpen(tables)) {
    writeHead(maps, { gen: 0, serial });
    cache.serial = serial;
    return head.gen;
  }
  // Forgotten until the write is through: a failure halfway leaves the generation as nobody knows it.
  const known = cache.generations.get(target);
  cache.generations.delete(target);
  cache.serial = undefined;
  const addresses = sync(
    maps.addresses,
    known?.addresses ??
      readGeneration(maps.addresses, ADDRESS_KEY_SIZE, ADDRESS_VALUE, addressKeyGeneration, target),
    entries.addresses,
  );
  const ports = sync(
    maps.ports,
    known?.ports ?? readGeneration(maps.ports, PORT_KEY_SIZE, PORT_VALUE, portKeyGeneration, target),
    entries.ports,
  );
  mapUpdate(maps.state, stateKey(target), entries.anyPort);
  writeHead(maps, { gen: target, serial });
  cache.generations.set(target, { addresses, ports });
  cache.serial = serial;
  return head.gen;
}
