/**
 * Loading programs and attaching them to cgroups: BPF_PROG_LOAD (with the verifier log on failure),
 * BPF_PROG_ATTACH with BPF_F_ALLOW_MULTI (the attachment lives as long as the cgroup, no pinning),
 * BPF_PROG_QUERY, BPF_PROG_DETACH, and program names through BPF_OBJ_GET_INFO_BY_FD.
 */
import { NetctxError } from "../../errors.ts";
import { KernelError } from "../errors.ts";
import { strerror } from "../ffi.ts";
import { AttachType, type AttachTypeName } from "./abi.ts";
import type { ProgramSpec } from "./program-spec.ts";
import { BPF_ATTR_SIZE, BpfCmd, bpf, closeFd, NativeBuffer, openDirectory, withBuffers } from "./syscall.ts";

export const BPF_F_ALLOW_MULTI = 2;
const LOG_SIZE = 64 * 1024;
const LICENSE = new TextEncoder().encode("GPL\0");

/** Load a program; returns its fd. A verifier refusal carries the verifier's log in the message. */
export function loadProgram(spec: ProgramSpec): number {
  const insns = NativeBuffer.from(spec.insns);
  const license = NativeBuffer.from(LICENSE);
  const log = new NativeBuffer(LOG_SIZE);
  const attr = new NativeBuffer(BPF_ATTR_SIZE);
  try {
    const load = (logLevel: number): number => {
      attr.bytes.fill(0);
      const v = attr.view;
      v.setUint32(0, spec.progType, true);
      v.setUint32(4, spec.insns.length / 8, true);
      v.setBigUint64(8, insns.address, true);
      v.setBigUint64(16, license.address, true);
      v.setUint32(24, logLevel, true);
      v.setUint32(28, logLevel ? LOG_SIZE : 0, true);
      v.setBigUint64(32, logLevel ? log.address : 0n, true);
      attr.bytes.set(new TextEncoder().encode(spec.name.slice(0, 15)), 48);
      v.setUint32(68, AttachType[spec.attachType], true);
      return bpf(BpfCmd.PROG_LOAD, attr, `bpf prog load ${spec.name}`);
    };
    try {
      // The log costs verifier time: load without it and ask again only to explain a failure.
      return retryOnSignal(() => load(0));
    } catch (err) {
      if (!(err instanceof KernelError)) throw err;
      try {
        load(1);
      } catch {}
      const end = log.bytes.indexOf(0);
      const text = new TextDecoder().decode(log.bytes.subarray(0, end < 0 ? LOG_SIZE : end)).trim();
      throw new KernelError(
        err.op,
        err.errno,
        text ? `${strerror(err.errno)}\nverifier log:\n${text}` : undefined,
      );
    }
  } finally {
    for (const b of [insns, license, log, attr]) b.free();
  }
}

/**
 * The verifier gives up with EAGAIN when a signal is pending for the loading thread (a profiler's SIGPROF, a child's
 * SIGCHLD in the engine); the load is fine to repeat, as libbpf does (up to 5 attempts).
 */
function retryOnSignal(load: () => number): number {
  for (let attempt = 1; ; attempt++) {
    try {
      return load();
    } catch (err) {
      if (!(err instanceof KernelError && err.errnoName === "EAGAIN") || attempt >= 5) throw err;
    }
  }
}

function attachAttr(
  attr: NativeBuffer,
  cgroupFd: number,
  progFd: number,
  type: AttachTypeName,
  flags: number,
): void {
  attr.bytes.fill(0);
  attr.view.setUint32(0, cgroupFd, true);
  attr.view.setUint32(4, progFd, true);
  attr.view.setUint32(8, AttachType[type], true);
  attr.view.setUint32(12, flags, true);
}

/**
 * `target` is a cgroup fd, or for TCX_INGRESS and TCX_EGRESS an ifindex (tcx, kernel 6.6+: the attachment lasts as long as the
 * device; its flags are bpf_mprog's, where 0 appends).
 */
export function attachProgram(
  target: number,
  progFd: number,
  type: AttachTypeName,
  flags = BPF_F_ALLOW_MULTI,
): void {
  withBuffers([BPF_ATTR_SIZE], (attr) => {
    attachAttr(attr, target, progFd, type, flags);
    bpf(BpfCmd.PROG_ATTACH, attr, `bpf prog attach ${type}`);
  });
}

export function detachProgram(target: number, progFd: number, type: AttachTypeName): void {
  withBuffers([BPF_ATTR_SIZE], (attr) => {
    attachAttr(attr, target, progFd, type, 0);
    bpf(BpfCmd.PROG_DETACH, attr, `bpf prog detach ${type}`);
  });
}

/** Program ids attached directly to the cgroup (or, for tcx, the ifindex) at this hook, not inherited ones. */
export function queryPrograms(target: number, type: AttachTypeName): number[] {
  const max = 64;
  return withBuffers([BPF_ATTR_SIZE, max * 4], (attr, ids) => {
    attr.view.setUint32(0, target, true);
    attr.view.setUint32(4, AttachType[type], true);
    attr.view.setBigUint64(16, ids.address, true);
    attr.view.setUint32(24, max, true);
    bpf(BpfCmd.PROG_QUERY, attr, `bpf prog query ${type}`);
    const count = attr.view.getUint32(24, true);
    return Array.from({ length: Math.min(count, max) }, (_, i) => ids.view.getUint32(i * 4, true));
  });
}

export function progFdById(id: number): number {
  return withBuffers([BPF_ATTR_SIZE], (attr) => {
    attr.view.setUint32(0, id, true);
    return bpf(BpfCmd.PROG_GET_FD_BY_ID, attr, `bpf prog get fd ${id}`);
  });
}

export interface ProgInfo {
  id: number;
  type: number;
  name: string;
  /** The kernel's hash of the instructions as loaded (hex): equal tags, equal programs. */
  tag: string;
  /** The maps the program uses (the first MAX_MAP_IDS). */
  mapIds: number[];
}

const MAX_MAP_IDS = 8;

/** struct bpf_prog_info: type @0, id @4, tag[8] @8, nr_map_ids @52, map_ids @56, name[16] @64. */
export function progInfo(progFd: number): ProgInfo {
  const size = 256;
  return withBuffers([BPF_ATTR_SIZE, size, MAX_MAP_IDS * 4], (attr, info, ids) => {
    info.view.setUint32(52, MAX_MAP_IDS, true);
    info.view.setBigUint64(56, ids.address, true);
    attr.view.setUint32(0, progFd, true);
    attr.view.setUint32(4, size, true);
    attr.view.setBigUint64(8, info.address, true);
    bpf(BpfCmd.OBJ_GET_INFO_BY_FD, attr, "bpf obj get info");
    const nameBytes = info.bytes.subarray(64, 80);
    const end = nameBytes.indexOf(0);
    return {
      type: info.view.getUint32(0, true),
      id: info.view.getUint32(4, true),
      name: new TextDecoder().decode(nameBytes.subarray(0, end < 0 ? 16 : end)),
      tag: Buffer.from(info.bytes.subarray(8, 16)).toString("hex"),
      mapIds: Array.from({ length: Math.min(info.view.getUint32(52, true), MAX_MAP_IDS) }, (_, i) =>
        ids.view.getUint32(i * 4, true),
      ),
    };
  });
}

/** Open a cgroup directory for attach/detach/query; a missing cgroup is not-found. */
export function openCgroup(path: string): number {
  try {
    return openDirectory(path);
  } catch (err) {
    if (err instanceof KernelError && err.errnoName === "ENOENT")
      throw new NetctxError("not-found", `cgroup "${path}" does not exist`, "cgroup");
    throw err;
  }
}

export function withFd<T>(fd: number, fn: (fd: number) => T): T {
  try {
    return fn(fd);
  } finally {
    closeFd(fd);
  }
}

/**
 * Detach the programs `list` finds on the cgroup at `path`; a missing cgroup means nothing is attached.
 * `list` opens an fd per program; every one is closed, detached or not.
 */
export function detachFrom(
  path: string,
  list: (cgroupFd: number) => { fd: number; type: AttachTypeName }[],
): void {
  let cg: number;
  try {
    cg = openCgroup(path);
  } catch (err) {
    if (err instanceof NetctxError && err.code === "not-found") return;
    throw err;
  }
  withFd(cg, () => {
    const found = list(cg);
    try {
      for (const p of found) detachProgram(cg, p.fd, p.type);
    } finally {
      for (const p of found) closeFd(p.fd);
    }
  });
}
