/**
 * BPF maps (hash, LRU hash, array, LPM trie): create, look up, update, delete, walk, and reopen by id (a later
 * process finds a map through the program that uses it: progInfo lists its map ids, mapInfo tells them apart by
 * name). Keys and values are plain byte arrays.
 */
import { KernelError } from "../errors.ts";
import { BPF_ATTR_SIZE, BpfCmd, bpf, NativeBuffer, withBuffers } from "./syscall.ts";

export const MapType = { HASH: 1, ARRAY: 2, LRU_HASH: 9, LRU_PERCPU_HASH: 10, LPM_TRIE: 11 } as const;
const BPF_MAP_TYPE_HASH = MapType.HASH;
const BPF_F_NO_PREALLOC = 1;

export interface HashMapSpec {
  name: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** All max_entries allocated up front (the kernel's default); otherwise entries are allocated as they are added. */
  preallocated?: boolean;
}

/** Returns the map's fd. */
export function createHashMap(spec: HashMapSpec): number {
  return withBuffers([BPF_ATTR_SIZE], (attr) => {
    const v = attr.view;
    v.setUint32(0, BPF_MAP_TYPE_HASH, true);
    v.setUint32(4, spec.keySize, true);
    v.setUint32(8, spec.valueSize, true);
    v.setUint32(12, spec.maxEntries, true);
    v.setUint32(16, spec.preallocated ? 0 : BPF_F_NO_PREALLOC, true);
    attr.bytes.set(new TextEncoder().encode(spec.name.slice(0, 15)), 28);
    return bpf(BpfCmd.MAP_CREATE, attr, `bpf map create ${spec.name}`);
  });
}

export interface MapSpec {
  name: string;
  type: (typeof MapType)[keyof typeof MapType];
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags?: number;
}

/** Any map type; an LPM trie needs BPF_F_NO_PREALLOC, which this sets for it. Returns the map's fd. */
export function createMap(spec: MapSpec): number {
  return withBuffers([BPF_ATTR_SIZE], (attr) => {
    const v = attr.view;
    v.setUint32(0, spec.type, true);
    v.setUint32(4, spec.keySize, true);
    v.setUint32(8, spec.valueSize, true);
    v.setUint32(12, spec.maxEntries, true);
    v.setUint32(16, (spec.flags ?? 0) | (spec.type === MapType.LPM_TRIE ? BPF_F_NO_PREALLOC : 0), true);
    attr.bytes.set(new TextEncoder().encode(spec.name.slice(0, 15)), 28);
    return bpf(BpfCmd.MAP_CREATE, attr, `bpf map create ${spec.name}`);
  });
}

/** The value under `key`, or undefined when there is none. */
export function mapLookup(mapFd: number, key: Uint8Array, valueSize: number): Uint8Array | undefined {
  const k = NativeBuffer.from(key);
  try {
    return withBuffers([BPF_ATTR_SIZE, valueSize], (attr, value) => {
      attr.view.setUint32(0, mapFd, true);
      attr.view.setBigUint64(8, k.address, true);
      attr.view.setBigUint64(16, value.address, true);
      try {
        bpf(BpfCmd.MAP_LOOKUP_ELEM, attr, "bpf map lookup");
      } catch (err) {
        if (err instanceof KernelError && err.errnoName === "ENOENT") return undefined;
        throw err;
      }
      return value.bytes.slice();
    });
  } finally {
    k.free();
  }
}

export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  name: string;
}

/** struct bpf_map_info: type @0, id @4, key_size @8, value_size @12, max_entries @16, map_flags @20, name[16] @24. */
export function mapInfo(mapFd: number): MapInfo {
  const size = 88;
  return withBuffers([BPF_ATTR_SIZE, size], (attr, info) => {
    attr.view.setUint32(0, mapFd, true);
    attr.view.setUint32(4, size, true);
    attr.view.setBigUint64(8, info.address, true);
    bpf(BpfCmd.OBJ_GET_INFO_BY_FD, attr, "bpf obj get info (map)");
    const nameBytes = info.bytes.subarray(24, 40);
    const end = nameBytes.indexOf(0);
    return {
      type: info.view.getUint32(0, true),
      id: info.view.getUint32(4, true),
      keySize: info.view.getUint32(8, true),
      valueSize: info.view.getUint32(12, true),
      maxEntries: info.view.getUint32(16, true),
      name: new TextDecoder().decode(nameBytes.subarray(0, end < 0 ? 16 : end)),
    };
  });
}

export function mapUpdate(mapFd: number, key: Uint8Array, value: Uint8Array): void {
  const k = NativeBuffer.from(key);
  const val = NativeBuffer.from(value);
  try {
    withBuffers([BPF_ATTR_SIZE], (attr) => {
      attr.view.setUint32(0, mapFd, true);
      attr.view.setBigUint64(8, k.address, true);
      attr.view.setBigUint64(16, val.address, true);
      bpf(BpfCmd.MAP_UPDATE_ELEM, attr, "bpf map update");
    });
  } finally {
    k.free();
    val.free();
  }
}

/** False when the key was not there. */
export function mapDelete(mapFd: number, key: Uint8Array): boolean {
  const k = NativeBuffer.from(key);
  try {
    return withBuffers([BPF_ATTR_SIZE], (attr) => {
      attr.view.setUint32(0, mapFd, true);
      attr.view.setBigUint64(8, k.address, true);
      try {
        bpf(BpfCmd.MAP_DELETE_ELEM, attr, "bpf map delete");
        return true;
      } catch (err) {
        if (err instanceof KernelError && err.errnoName === "ENOENT") return false;
        throw err;
      }
    });
  } finally {
    k.free();
  }
}

/** Every entry, as copies; a key deleted while walking is skipped. */
export function mapEntries(mapFd: number, keySize: number, valueSize: number): [Uint8Array, Uint8Array][] {
  return withBuffers([BPF_ATTR_SIZE, keySize, keySize, valueSize], (attr, prev, next, value) => {
    const out: [Uint8Array, Uint8Array][] = [];
    let first = true;
    for (;;) {
      attr.bytes.fill(0);
      attr.view.setUint32(0, mapFd, true);
      attr.view.setBigUint64(8, first ? 0n : prev.address, true);
      attr.view.setBigUint64(16, next.address, true);
      try {
        bpf(BpfCmd.MAP_GET_NEXT_KEY, attr, "bpf map next key");
      } catch (err) {
        if (err instanceof KernelError && err.errnoName === "ENOENT") return out;
        throw err;
      }
      first = false;
      prev.bytes.set(next.bytes);
      attr.bytes.fill(0);
      attr.view.setUint32(0, mapFd, true);
      attr.view.setBigUint64(8, prev.address, true);
      attr.view.setBigUint64(16, value.address, true);
      try {
        bpf(BpfCmd.MAP_LOOKUP_ELEM, attr, "bpf map lookup");
        out.push([prev.bytes.slice(), value.bytes.slice()]);
      } catch (err) {
        if (!(err instanceof KernelError && err.errnoName === "ENOENT")) throw err;
      }
    }
  });
}

const BPF_MAP_LOOKUP_BATCH = 24;
const BATCH = 1024;

/**
 * Every entry through BPF_MAP_LOOKUP_BATCH: one syscall per BATCH entries where mapEntries makes two per entry.
 * `valueSize` is the whole value as user space sees it (for a per-CPU map: the rounded value times the CPUs).
 */
export function mapEntriesBatch(
  mapFd: number,
  keySize: number,
  valueSize: number,
): [Uint8Array, Uint8Array][] {
  return withBuffers(
    [BPF_ATTR_SIZE, 8, 8, keySize * BATCH, valueSize * BATCH],
    (attr, inBatch, outBatch, keys, values) => {
      const out: [Uint8Array, Uint8Array][] = [];
      for (let first = true; ; first = false) {
        attr.bytes.fill(0);
        const v = attr.view;
        v.setBigUint64(0, first ? 0n : inBatch.address, true);
        v.setBigUint64(8, outBatch.address, true);
        v.setBigUint64(16, keys.address, true);
        v.setBigUint64(24, values.address, true);
        v.setUint32(32, BATCH, true);
        v.setUint32(36, mapFd, true);
        let done = false;
        try {
          bpf(BPF_MAP_LOOKUP_BATCH, attr, "bpf map lookup batch");
        } catch (err) {
          // ENOENT: the walk is over; what this call returned is still in the buffers (count says how much).
          if (!(err instanceof KernelError && err.errnoName === "ENOENT")) throw err;
          done = true;
        }
        const count = v.getUint32(32, true);
        for (let i = 0; i < count; i++)
          out.push([
            keys.bytes.slice(i * keySize, (i + 1) * keySize),
            values.bytes.slice(i * valueSize, (i + 1) * valueSize),
          ]);
        if (done || count === 0) return out;
        inBatch.bytes.set(outBatch.bytes);
      }
    },
  );
}

export function mapFdById(id: number): number {
  return withBuffers([BPF_ATTR_SIZE], (attr) => {
    attr.view.setUint32(0, id, true);
    return bpf(BpfCmd.MAP_GET_FD_BY_ID, attr, `bpf map get fd ${id}`);
  });
}
