/**
 * netctx's settings, read once from the environment where a process enters netctx (the CLI, `netctx serve`, the
 * CNI plugin's entry) and carried on the Host: code below those edges takes a setting from `host.config` or as a
 * parameter, never from `process.env`, so what a test or a second Host sets cannot leak into another one.
 */
import { isIP } from "node:net";
import { hostname } from "node:os";
import { join } from "node:path";
import { invalid } from "./errors.ts";
import { FAIL_ENV, PAUSE_ENV } from "./pause.ts";

export const DEFAULT_STATE_DIR = "/var/lib/netctx";
export const DEFAULT_DNS_DOMAIN = "netctx";

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
  /**
   * The domain context names answer under (NAME.NETWORK.DOMAIN): serve's --dns-domain, else "netctx". CNI results
   * name NETWORK.DOMAIN as their search domain.
   */
  readonly dnsDomain: string;
  /** This host's membership of a netctx cluster (issue 18): set by --etcd / NETCTX_ETCD; undefined: a lone host. */
  readonly cluster: ClusterSettings | undefined;
}

/** TLS towards etcd: files read when the client is made. All three undefined: plain or system-CA https. */
export interface EtcdTls {
  /** CA that signed etcd's server certificate (--etcd-cacert, NETCTX_ETCD_CACERT). */
  readonly caFile: string | undefined;
  /** Client certificate and its key, for an etcd started with --client-cert-auth (--etcd-cert/--etcd-key). */
  readonly certFile: string | undefined;
  readonly keyFile: string | undefined;
}

export interface ClusterSettings {
  /** etcd client URLs, http:// or https:// (--etcd URL[,URL...], NETCTX_ETCD). */
  readonly endpoints: readonly string[];
  /** This node's name in etcd (--node, NETCTX_NODE): default the hostname. */
  readonly nodeName: string;
  /** This node's underlay address (--underlay, NETCTX_UNDERLAY); undefined: the source of the route to etcd. */
  readonly underlay: string | undefined;
  /** Seconds the node record lives without a keepalive (--node-ttl, NETCTX_NODE_TTL): default 10. */
  readonly nodeTtl: number;
  readonly tls: EtcdTls;
}

export const DEFAULT_NODE_TTL = 10;

/** What the command line says, over the environment. */
export interface ConfigOverrides {
  stateDir?: string | undefined;
  socketPath?: string | undefined;
  /** serve's and cluster's options, each over its variable. */
  etcd?: string | undefined;
  node?: string | undefined;
  underlay?: string | undefined;
  nodeTtl?: string | undefined;
  etcdCacert?: string | undefined;
  etcdCert?: string | undefined;
  etcdKey?: string | undefined;
  dnsDomain?: string | undefined;
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
    dnsDomain: overrides.dnsDomain ?? DEFAULT_DNS_DOMAIN,
    cluster: clusterSettings(env, overrides),
  };
}

// A node name becomes one path segment of an etcd key (keys.ts) and a column of `cluster status`.
const NODE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** The cluster settings, checked here so a bad one fails at start, naming its option. */
function clusterSettings(env: Env, o: ConfigOverrides): ClusterSettings | undefined {
  const etcd = o.etcd ?? env.NETCTX_ETCD;
  const pick = (own: string | undefined, variable: string) => own ?? (env[variable] || undefined);
  const tls: EtcdTls = {
    caFile: pick(o.etcdCacert, "NETCTX_ETCD_CACERT"),
    certFile: pick(o.etcdCert, "NETCTX_ETCD_CERT"),
    keyFile: pick(o.etcdKey, "NETCTX_ETCD_KEY"),
  };
  if (!etcd) return undefined;
  const endpoints = etcd
    .split(",")
    .map((u) => u.trim())
    .filter(Boolean);
  if (endpoints.length === 0) throw invalid("etcd", "names no endpoint");
  for (const url of endpoints) checkEndpoint(url);
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined))
    throw invalid("etcd-cert", "--etcd-cert and --etcd-key go together");
  const nodeName = pick(o.node, "NETCTX_NODE") ?? hostname();
  if (!NODE_NAME_RE.test(nodeName))
    throw invalid(
      "node",
      `"${nodeName}" is not a node name (letters, digits, '.', '_', '-', at most 63, starting with a letter or digit)`,
    );
  const ttlText = pick(o.nodeTtl, "NETCTX_NODE_TTL") ?? String(DEFAULT_NODE_TTL);
  const nodeTtl = Number(ttlText);
  // etcd refuses leases shorter than 1.5 election timeouts (2 s with its defaults) by granting its minimum instead.
  if (!/^\d+$/.test(ttlText.trim()) || nodeTtl < 2 || nodeTtl > 3600)
    throw invalid("node-ttl", `"${ttlText}" is not a number of seconds (2-3600)`);
  const underlay = pick(o.underlay, "NETCTX_UNDERLAY");
  if (underlay !== undefined && !isIP(underlay))
    throw invalid("underlay", `"${underlay}" is not an IPv4 or IPv6 address`);
  return { endpoints, nodeName, underlay, nodeTtl, tls };
}

function checkEndpoint(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid("etcd", `"${url}" is not a URL (http://HOST:PORT or https://HOST:PORT)`);
  }
  if (
    (parsed.protocol !== "http:" && parsed.protocol !== "https:") ||
    !parsed.port ||
    parsed.pathname !== "/"
  )
    throw invalid("etcd", `"${url}" is not an etcd client URL (http://HOST:PORT or https://HOST:PORT)`);
}

function segmentPorts(value: string | undefined): number {
  const n = Number(value ?? SEGMENT_PORTS);
  return Number.isInteger(n) && n > 0 && n <= 1000 ? n : SEGMENT_PORTS;
}
