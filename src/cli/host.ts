import { Host } from "../host.ts";
import { cliConfig } from "./config.ts";

/** Open the host for one CLI command and close it afterwards. */
export function withHost<T>(fn: (host: Host) => T): T {
  const host = Host.open(cliConfig());
  try {
    return fn(host);
  } finally {
    host.close();
  }
}
