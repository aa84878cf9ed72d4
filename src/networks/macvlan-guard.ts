/**
 * The source guard on the parent of an `--isolate` macvlan network (kernel/bpf/macvlan-source-guard.ts): the
 * program sits first on the parent's tcx egress, and its map holds the parent's own MAC and each context's MAC with
 * its addresses. A later process finds the map through the program attached there (no bpffs), as the policy data
 * path finds its own.
 */
import { NetctxError } from "../errors.ts";
import type { Host } from "../host.ts";
import {
  attachProgram,
  detachProgram,
  loadProgram,
  progFdById,
  progInfo,
  queryPrograms,
} from "../kernel/bpf/attach.ts";
import {
  GUARD_FLAG_HOST,
  GUARD_KEY_SIZE,
  GUARD_VALUE_SIZE,
  guardKey,
  guardValue,
  MACVLAN_GUARD_MAP_NAME,
  MACVLAN_GUARD_NAME,
  macvlanGuardProgram,
} from "../kernel/bpf/macvlan-source-guard.ts";
import { createHashMap, mapDelete, mapEntries, mapFdById, mapInfo, mapUpdate } from "../kernel/bpf/maps.ts";
import { closeFd } from "../kernel/bpf/syscall.ts";
import { KernelError } from "../kernel/errors.ts";
import { ipBytes, parseIp } from "../net/cidr.ts";

/** bpf_mprog: attach before every program already there (the policy program decides after the source is known). */
const BPF_F_BEFORE = 8;

/**
 * `use` on each guard program on the parent's tcx egress (its fd closed after; a program gone meanwhile is skipped),
 * until it returns something.
 */
function eachGuardProgram<T>(
  ifindex: number,
  use: (prog: number, info: ReturnType<typeof progInfo>) => T | undefined,
): T | undefined {
  for (const id of queryPrograms(ifindex, "TCX_EGRESS")) {
    let prog: number;
    try {
      prog = progFdById(id);
    } catch (err) {
      if (err instanceof KernelError && err.errnoName === "ENOENT") continue;
      throw err;
    }
    try {
      const info = progInfo(prog);
      if (info.name !== MACVLAN_GUARD_NAME) continue;
      const found = use(prog, info);
      if (found !== undefined) return found;
    } finally {
      closeFd(prog);
    }
  }
  return undefined;
}

/** The guard's map on the parent `ifindex`, if its program is attached there (an fd the caller closes). */
function guardMap(ifindex: number): number | undefined {
  return eachGuardProgram(ifindex, (_prog, info) => {
    for (const mapId of info.mapIds) {
      const fd = mapFdById(mapId);
      if (mapInfo(fd).name === MACVLAN_GUARD_MAP_NAME) return fd;
      closeFd(fd);
    }
    return undefined;
  });
}

/** A context's macvlan: its MAC and its addresses ("10.1.0.5/24", "fd00::5/64"). */
export interface MacvlanSource {
  mac: string;
  addresses: readonly string[];
}

/**
 * The guard on the parent, made when missing; the parent's own MAC is (again) the host's. A guard made now admits
 * `existing` before it attaches: contexts made before it (an earlier netctx) keep sending. Returns its map's fd.
 */
function ensureGuard(
  host: Host,
  parent: string,
  existing: () => MacvlanSource[],
): { ifindex: number; map: number } {
  const link = host.rtnl.linkGet(parent);
  if (!link?.mac) throw new NetctxError("not-found", `macvlan parent ${parent} is gone`);
  let map = guardMap(link.index);
  if (map === undefined) {
    map = createHashMap({
      name: MACVLAN_GUARD_MAP_NAME,
      keySize: GUARD_KEY_SIZE,
      valueSize: GUARD_VALUE_SIZE,
      maxEntries: 65536,
    });
    try {
      const prog = loadProgram(macvlanGuardProgram(map));
      try {
        mapUpdate(map, guardKey(link.index, link.mac), guardValue(GUARD_FLAG_HOST));
        for (const s of existing()) {
          const { v4, v6 } = addressBytes(s.addresses);
          mapUpdate(map, guardKey(link.index, s.mac), guardValue(0, v4, v6));
        }
        attachProgram(link.index, prog, "TCX_EGRESS", BPF_F_BEFORE);
      } finally {
        closeFd(prog);
      }
    } catch (err) {
      closeFd(map);
      if (err instanceof KernelError)
        throw new NetctxError(
          "unsupported",
          `the source guard of macvlan parent ${parent} needs tcx (Linux 6.6+): ${err.message.split("\n")[0]}`,
        );
      throw err;
    }
  } else mapUpdate(map, guardKey(link.index, link.mac), guardValue(GUARD_FLAG_HOST));
  return { ifindex: link.index, map };
}

/** The addresses ("10.1.0.5/24", "fd00::5/64") as the map's IPv4 and IPv6 fields. */
function addressBytes(addresses: readonly string[]): { v4?: Uint8Array; v6?: Uint8Array } {
  const out: { v4?: Uint8Array; v6?: Uint8Array } = {};
  for (const a of addresses) {
    const ip = parseIp(a.split("/")[0]!, "address");
    if (ip.family === 4) out.v4 ??= ipBytes(ip);
    else out.v6 ??= ipBytes(ip);
  }
  return out;
}

/**
 * A context's macvlan may send from its MAC with its addresses (and nothing else may, but the host). `existing`: the
 * parent's other contexts, for a guard made now.
 */
export function admitMacvlanSource(
  host: Host,
  parent: string,
  source: MacvlanSource,
  existing: () => MacvlanSource[],
): void {
  const { ifindex, map } = ensureGuard(host, parent, existing);
  try {
    const { v4, v6 } = addressBytes(source.addresses);
    mapUpdate(map, guardKey(ifindex, source.mac), guardValue(0, v4, v6));
  } finally {
    closeFd(map);
  }
}

/**
 * The context's entries go (found by its addresses: its MAC may be gone with its netns). A parent without the guard
 * or gone has nothing to forget.
 */
export function forgetMacvlanSource(host: Host, parent: string, addresses: readonly string[]): void {
  const ifindex = host.rtnl.linkIndexIfAny(parent);
  if (ifindex === undefined) return;
  const map = guardMap(ifindex);
  if (map === undefined) return;
  try {
    const { v4, v6 } = addressBytes(addresses);
    const wanted = guardValue(0, v4, v6);
    for (const [key, value] of mapEntries(map, GUARD_KEY_SIZE, GUARD_VALUE_SIZE)) {
      if (new DataView(key.buffer, key.byteOffset).getUint32(0, true) !== ifindex) continue;
      if (Buffer.compare(Buffer.from(value), Buffer.from(wanted)) === 0) mapDelete(map, key);
    }
  } finally {
    closeFd(map);
  }
}

/** The guard leaves the parent (its last macvlan network went): the parent is the operator's again. */
export function removeMacvlanGuard(host: Host, parent: string): void {
  const ifindex = host.rtnl.linkIndexIfAny(parent);
  if (ifindex === undefined) return;
  eachGuardProgram(ifindex, (prog) => {
    detachProgram(ifindex, prog, "TCX_EGRESS");
    return undefined;
  });
}
