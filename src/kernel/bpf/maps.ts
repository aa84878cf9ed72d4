/**
 * BPF hash maps: create, update, delete, walk, and reopen by id (a later process finds a map through the program
 * that uses it: progInfo lists its map ids). Keys and values are plain byte arrays.
 */
import { KernelError } from "../errors.ts";
import { BPF_ATTR_SIZE, BpfCmd, bpf, NativeBuffer, withBuffers } from "./syscall.ts";

const BPF_MAP_TYPE_HASH = 1;
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

export function mapFdById(id: number): number {
  return withBuffers([BPF_ATTR_SIZE], (attr) => {
    attr.view.setUint32(0, id, true);
    return bpf(BpfCmd.MAP_GET_FD_BY_ID, attr, `bpf map get fd ${id}`);
  });
}
