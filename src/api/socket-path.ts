/**
 * Where the resident engine listens: beside the state it serves, so a CLI or CNI launcher with another state dir
 * never talks to the wrong engine; the state dir is 0700, which makes the socket root-only as well.
 */
import { join } from "node:path";

export const DEFAULT_STATE_DIR = "/var/lib/netctx";

export function apiSocketPath(stateDir = process.env.NETCTX_STATE_DIR ?? DEFAULT_STATE_DIR): string {
  return process.env.NETCTX_SOCKET ?? join(stateDir, "netctx.sock");
}
