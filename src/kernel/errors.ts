import { NetctxError } from "../errors.ts";
import { errnoName, strerror } from "./ffi.ts";

/** The kernel refused an operation: errno, its name, what we asked for, and the kernel's own text (extack). */
export class KernelError extends NetctxError {
  readonly errno: number;
  readonly errnoName: string;
  readonly op: string;
  readonly extack?: string;

  constructor(
    op: string,
    errno: number,
    extack?: string,
    override?: { code: "unsupported"; message: string },
  ) {
    const name = errnoName(errno);
    const text = extack ?? strerror(errno);
    super(override?.code ?? "kernel", override?.message ?? `${op}: ${name}: ${text}`);
    this.name = "KernelError";
    this.errno = errno;
    this.errnoName = name;
    this.op = op;
    if (extack !== undefined) this.extack = extack;
  }
}

export const EPERM = 1;
export const ENOENT = 2;
export const ESRCH = 3;
export const EINTR = 4;
export const EAGAIN = 11;
export const EBUSY = 16;
export const EEXIST = 17;
export const ENODEV = 19;
export const EINVAL = 22;
export const ENOSPC = 28;
export const EUSERS = 87;
export const ENOBUFS = 105;
export const EOPNOTSUPP = 95;
export const EADDRNOTAVAIL = 99;
