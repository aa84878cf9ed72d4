/**
 * bpf(2) through koffi. glibc has no bpf() wrapper, so this goes through syscall(2).
 * Every buffer the kernel reads through a pointer inside `union bpf_attr` (instructions, license, log,
 * program id arrays) lives in koffi-allocated memory: a V8 typed array may move, its address is not stable.
 */
import koffi from "koffi";
import { KernelError } from "../errors.ts";
import { close, O_CLOEXEC, O_DIRECTORY, O_RDONLY, open, bpfSyscall as syscallC } from "../ffi.ts";

const BPF_SYSCALL: Partial<Record<string, number>> = { x64: 321, arm64: 280 };

export const BpfCmd = {
  MAP_CREATE: 0,
  MAP_LOOKUP_ELEM: 1,
  MAP_UPDATE_ELEM: 2,
  MAP_DELETE_ELEM: 3,
  MAP_GET_NEXT_KEY: 4,
  PROG_LOAD: 5,
  PROG_ATTACH: 8,
  PROG_DETACH: 9,
  PROG_TEST_RUN: 10,
  PROG_GET_FD_BY_ID: 13,
  MAP_GET_FD_BY_ID: 14,
  OBJ_GET_INFO_BY_FD: 15,
  PROG_QUERY: 16,
} as const;

/** `union bpf_attr` is 144+ bytes on current kernels; the kernel checks that unused tail bytes are zero. */
export const BPF_ATTR_SIZE = 128;

/** Memory outside the V8 heap, with a stable address the kernel can be given inside an attr. */
export class NativeBuffer {
  readonly ptr: unknown;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly address: bigint;
  private freed = false;

  constructor(readonly size: number) {
    this.ptr = koffi.alloc("uint8", Math.max(size, 1));
    const ab = koffi.view(this.ptr, Math.max(size, 1));
    this.bytes = new Uint8Array(ab, 0, size);
    this.bytes.fill(0);
    this.view = new DataView(ab, 0, Math.max(size, 1));
    this.address = koffi.address(this.ptr);
  }

  static from(data: Uint8Array): NativeBuffer {
    const b = new NativeBuffer(data.length);
    b.bytes.set(data);
    return b;
  }

  free(): void {
    if (this.freed) return;
    this.freed = true;
    koffi.free(this.ptr);
  }
}

/** Run `fn` with native buffers that are always freed afterwards. */
export function withBuffers<T>(sizes: number[], fn: (...bufs: NativeBuffer[]) => T): T {
  const bufs = sizes.map((s) => new NativeBuffer(s));
  try {
    return fn(...bufs);
  } finally {
    for (const b of bufs) b.free();
  }
}

/** One bpf(2) call; returns the kernel's non-negative result or throws a KernelError carrying errno. */
export function bpf(cmd: number, attr: NativeBuffer, op: string): number {
  const nr = BPF_SYSCALL[process.arch];
  if (nr === undefined) throw new KernelError(op, 38, undefined, unsupportedArch());
  const r = syscallC(nr, cmd, attr.ptr, attr.size);
  if (r < 0) throw new KernelError(op, koffi.errno());
  return r;
}

function unsupportedArch(): { code: "unsupported"; message: string } {
  return { code: "unsupported", message: `bpf: no syscall number known for architecture ${process.arch}` };
}

/** An O_DIRECTORY fd for a cgroup, the `target_fd` of attach, detach and query. */
export function openDirectory(path: string): number {
  const fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw new KernelError(`open ${path}`, koffi.errno());
  return fd;
}

export function closeFd(fd: number): void {
  if (fd >= 0) close(fd);
}
