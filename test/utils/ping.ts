/** Reachability on the wire: ping from inside a netns. */
import { spawnSync } from "node:child_process";
import { inNetns } from "./netns.ts";

export interface PingOptions {
  /** Echo requests per try (sent 2 ms apart when more than one); the try succeeds when all come back. */
  count?: number;
  /** Source address (ping -I). */
  source?: string;
  /** Tries before giving up: a freshly changed MAC or address may need a neighbour round first. */
  tries?: number;
}

/** Whether `address` answers from inside the netns at path `netns` (HOST_NETNS for the test's own). */
export function ping(netns: string, address: string, opts: PingOptions = {}): boolean {
  const count = opts.count ?? 1;
  const argv = inNetns(netns, [
    "ping",
    "-n",
    "-q",
    "-c",
    String(count),
    ...(count > 1 ? ["-i", "0.002"] : []),
    "-W",
    "1",
    ...(opts.source ? ["-I", opts.source] : []),
    address,
  ]);
  for (let i = 0; i < (opts.tries ?? 1); i++)
    if (spawnSync(argv[0]!, argv.slice(1), { stdio: "ignore", timeout: 30_000 }).status === 0) return true;
  return false;
}
