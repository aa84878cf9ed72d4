/**
 * Errors are values with a stable code and a message that names the field at fault.
 * The CLI prints `error: <message>` on one line and exits non-zero; the library throws these.
 */
export type ErrorCode =
  | "invalid" // bad input: the message names the field
  | "conflict" // duplicate name, overlapping subnet, address taken
  | "not-found" // unknown network, context, ...
  | "exhausted" // address pool empty
  | "unsupported" // a kernel feature this machine lacks
  | "kernel" // the kernel refused an operation
  | "busy" // state store stayed locked past the retry budget
  | "forbidden" // the engine refuses the caller (a process inside a context)
  | "unavailable" // a service netctx depends on (etcd) did not answer in time
  | "internal";

export class NetctxError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = "NetctxError";
  }
}

export function invalid(field: string, message: string): NetctxError {
  return new NetctxError("invalid", `${field}: ${message}`, field);
}

export function notFound(what: string, name: string): NetctxError {
  return new NetctxError("not-found", `${what} "${name}" does not exist`, what);
}

export function conflict(field: string, message: string): NetctxError {
  return new NetctxError("conflict", `${field}: ${message}`, field);
}

/** One line for the terminal, whatever was thrown. */
export function errorLine(err: unknown): string {
  if (err instanceof Error) return err.message.split("\n")[0] ?? err.name;
  return String(err);
}
