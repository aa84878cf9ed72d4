/**
 * CNI errors in the spec's JSON form ({cniVersion, code, msg, details}) with the spec's well-known codes;
 * our own NetctxError codes map onto them (or onto plugin codes >= 100).
 */
import { NetctxError } from "../errors.ts";
import { KernelError } from "../kernel/errors.ts";

export const CniCode = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnv: 4,
  io: 5,
  decode: 6,
  invalidConfig: 7,
  tryAgain: 11,
  notAvailable: 50,
  conflict: 100,
  exhausted: 101,
  kernel: 102,
  checkFailed: 103,
  internal: 999,
} as const;

export class CniError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly details = "",
  ) {
    super(message);
    this.name = "CniError";
  }
}

export function toCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof KernelError) return new CniError(CniCode.kernel, err.message);
  if (err instanceof NetctxError) {
    const code =
      err.code === "invalid"
        ? CniCode.invalidConfig
        : err.code === "conflict"
          ? CniCode.conflict
          : err.code === "exhausted"
            ? CniCode.exhausted
            : err.code === "busy" || err.code === "unavailable"
              ? CniCode.tryAgain
              : err.code === "not-found"
                ? CniCode.invalidConfig
                : err.code === "unsupported"
                  ? CniCode.notAvailable
                  : err.code === "kernel"
                    ? CniCode.kernel
                    : CniCode.internal;
    return new CniError(code, err.message);
  }
  const e = err instanceof Error ? err : new Error(String(err));
  return new CniError(CniCode.internal, e.message, e.stack ?? "");
}

export function errorJson(cniVersion: string, err: CniError): string {
  return JSON.stringify({
    cniVersion,
    code: err.code,
    msg: err.message,
    ...(err.details ? { details: err.details } : {}),
  });
}
