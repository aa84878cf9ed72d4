/**
 * netctx's settings, read once from the environment where a process enters netctx (the CLI, `netctx serve`, the
 * CNI plugin's entry) and carried on the Host: code below those edges takes a setting from `host.config` or as a
 * parameter, never from `process.env`, so what a test or a second Host sets cannot leak into another one.
 */
import { join } from "node:path";
import { FAIL_ENV, PAUSE_ENV } from "./pause.ts";

export const DEFAULT_STATE_DIR = "/var/lib/netctx";

// A root shell's PATH may lack the sbin directories that hold tc and nft (a one-shot CLI run through sudo).
const SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const SEGMENT_PORTS = 128;

export type Env = Readonly<Record<string, string | undefined>>;

export interface Config {
  /** The state store's directory: --state-dir, else NETCTX_STATE_DIR, else /var/lib/netctx. */
  readonly stateDir: string;
  /**
   * Where the resident engine listens: NETCTX_SOCKET, else beside the state it serves, so a CLI or CNI launcher
   * with another state dir never talks to the wrong engine (the state dir is 0700: the socket is root-only too).
   */
  readonly socketPath: string;
  /** Parent of the shared-stack contexts' cgroups (NETCTX_CGROUP_PARENT); undefined: "netctx" under the cgroup2 root. */
  readonly cgroupParent: string | undefined;
  /**
   * Where the loopback publishing programs attach (NETCTX_PUBLISH_CGROUP, else the contexts' cgroup parent, so a
   * test's never lands on the machine's root); undefined: the cgroup2 root.
   */
  readonly publishCgroup: string | undefined;
  /** Ports per bridge before a bridge network grows a segment (NETCTX_BRIDGE_SEGMENT_PORTS; tests make it small). */
  readonly bridgeSegmentPorts: number;
  /** Run the nft binary even where libnftables loads (NETCTX_NFT_BINARY=1). */
  readonly nftBinary: boolean;
  /** The environment of the tools netctx runs (tc, nft): its own, with the sbin directories added to PATH. */
  readonly toolEnv: Env;
  /** Steps at which crash tests stop the process (NETCTX_PAUSE_AT=step[,step...] or "*"); undefined: none. */
  readonly pauseAt: ReadonlySet<string> | undefined;
  /** Steps at which tests make the process fail (NETCTX_FAIL_AT=step[,step...]); undefined: none. */
  readonly failAt: ReadonlySet<string> | undefined;
}

/** What the command line says, over the environment. */
export interface ConfigOverrides {
  stateDir?: string | undefined;
  socketPath?: string | undefined;
}

/** The settings this environment gives. Pure: the edges pass `process.env`, tests whatever they like. */
export function readConfig(env: Env, overrides: ConfigOverrides = {}): Config {
  const stateDir = overrides.stateDir || (env.NETCTX_STATE_DIR ?? DEFAULT_STATE_DIR);
  const cgroupParent = env.NETCTX_CGROUP_PARENT;
  const pauseAt = env[PAUSE_ENV];
  const failAt = env[FAIL_ENV];
  return {
    stateDir,
    socketPath: overrides.socketPath ?? env.NETCTX_SOCKET ?? join(stateDir, "netctx.sock"),
    cgroupParent,
    publishCgroup: env.NETCTX_PUBLISH_CGROUP ?? cgroupParent,
    bridgeSegmentPorts: segmentPorts(env.NETCTX_BRIDGE_SEGMENT_PORTS),
    nftBinary: env.NETCTX_NFT_BINARY === "1",
    toolEnv: { ...env, PATH: `${env.PATH ?? ""}:${SEARCH_PATH}` },
    pauseAt: pauseAt ? new Set(pauseAt.split(",").map((s) => s.trim())) : undefined,
    failAt: failAt ? new Set(failAt.split(",").map((s) => s.trim())) : undefined,
  };
}

function segmentPorts(value: string | undefined): number {
  const n = Number(value ?? SEGMENT_PORTS);
  return Number.isInteger(n) && n > 0 && n <= 1000 ? n : SEGMENT_PORTS;
}
