/**
 * A throwaway host: a new network namespace and a private mount namespace with a tmpfs on /run/netns,
 * so every namespace, link, route, rule and nft table made inside vanishes with the process.
 * Tests, the demo and the bench all run through this; nothing they do reaches the machine's own network.
 */
import { mkdirSync } from "node:fs";

export const SANDBOX_MARK = "NETCTX_SANDBOX";

/** argv that runs `command` inside a fresh throwaway host namespace. */
export function sandboxArgv(command: readonly string[]): string[] {
  // /run/netns must exist as a mount point; creating the empty directory does not touch the network.
  mkdirSync("/run/netns", { recursive: true });
  const setup = [
    "set -e",
    "mount -t tmpfs -o mode=0755 netctx-netns /run/netns",
    "mkdir -p /run/netctx && mount -t tmpfs -o mode=0700 netctx-run /run/netctx",
    "ip link set lo up",
    `export ${SANDBOX_MARK}=1`,
    'exec "$@"',
  ].join("\n");
  return [
    "unshare",
    "--net",
    "--mount",
    "--propagation",
    "private",
    "--",
    "sh",
    "-c",
    setup,
    "sh",
    ...command,
  ];
}

/** Whether `env` (the caller's process.env: tests, the bench and the CLI's demo ask) carries the sandbox's mark. */
export function insideSandbox(env: Readonly<Record<string, string | undefined>>): boolean {
  return env[SANDBOX_MARK] === "1";
}
