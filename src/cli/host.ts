import { Host } from "../host.ts";

/** Open the host for one CLI command and close it afterwards. */
export function withHost<T>(fn: (host: Host) => T): T {
  const host = Host.open();
  try {
    return fn(host);
  } finally {
    host.close();
  }
}
