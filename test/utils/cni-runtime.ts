/**
 * A minimal container runtime for tests (the peers' minicni.js in TypeScript): installs the plugin with
 * `netctx cni install`, then execs it the way libcni does, with CNI_* env and the config on stdin. The runtime's
 * container netns come from netns.ts (addNetns, delNetns).
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { netctxOk } from "./cli.ts";

export interface CniCall {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed, or null when empty. */
  json: Record<string, unknown> | null;
}

export interface CniEnvInput {
  CNI_COMMAND?: string | undefined;
  CNI_CONTAINERID?: string | undefined;
  CNI_NETNS?: string | undefined;
  CNI_IFNAME?: string | undefined;
  CNI_ARGS?: string | undefined;
  [key: string]: string | undefined;
}

let plugin: string | undefined;

/** Path of the installed plugin (installed once per test file, into its scratch dir). */
export function installedPlugin(): string {
  if (!plugin) {
    const dir = join(process.env.NETCTX_TEST_SCRATCH ?? "/tmp", "cni-bin");
    plugin = netctxOk("cni", "install", dir).trim();
  }
  return plugin;
}

/** Only what a runtime passes the plugin: PATH, CNI_* (NETCTX_STATE_DIR is baked into the launcher). */
export function cniEnv(env: CniEnvInput): Record<string, string> {
  const clean: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    CNI_PATH: "/usr/lib/cni",
  };
  for (const [k, v] of Object.entries(env)) if (v !== undefined) clean[k] = v;
  return clean;
}

/** Exec the plugin with the runtime's environment and the config on stdin. */
export function cniRaw(env: CniEnvInput, stdin: string): CniCall {
  const r = spawnSync(installedPlugin(), [], {
    input: stdin,
    env: cniEnv(env),
    encoding: "utf8",
    timeout: 30_000,
  });
  const out = r.stdout.trim();
  let json: Record<string, unknown> | null = null;
  if (out) json = JSON.parse(out) as Record<string, unknown>;
  return { code: r.status ?? -1, stdout: out, stderr: r.stderr, json };
}

export function cni(
  command: string,
  conf: Record<string, unknown>,
  container: { id?: string; netns?: string; ifname?: string; args?: string } = {},
): CniCall {
  return cniRaw(
    {
      CNI_COMMAND: command,
      CNI_CONTAINERID: container.id,
      CNI_NETNS: container.netns,
      CNI_IFNAME: container.ifname ?? (container.id ? "eth0" : undefined),
      CNI_ARGS: container.args,
    },
    JSON.stringify(conf),
  );
}

/** Insist on exit 0; returns the parsed stdout. */
export function cniOk(
  command: string,
  conf: Record<string, unknown>,
  container: { id?: string; netns?: string; ifname?: string; args?: string } = {},
): Record<string, unknown> | null {
  const r = cni(command, conf, container);
  if (r.code !== 0) throw new Error(`CNI ${command} exited ${r.code}: ${r.stdout}${r.stderr}`);
  return r.json;
}

export interface CniResult {
  cniVersion: string;
  interfaces: { name: string; mac?: string; sandbox?: string; mtu?: number }[];
  ips: { address: string; gateway?: string; interface?: number; version?: string }[];
  routes: { dst: string; gw?: string }[];
  dns: Record<string, unknown>;
}
