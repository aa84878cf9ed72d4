/**
 * The CLI's settings: the environment, with the global options (--state-dir) over it, handed to everything a
 * command opens. The CLI is an edge: only here, in `serve` and in the CNI entry does netctx read process.env (see
 * config.ts).
 */
import type { Command } from "commander";
import { type Config, type ConfigOverrides, DEFAULT_NODE_TTL, readConfig } from "../config.ts";

let globalOptions: ConfigOverrides = {};

/** main.ts, once the global options are parsed. */
export function useGlobalOptions(stateDir: string | undefined): void {
  globalOptions = { stateDir };
}

/** This run's settings; a command's own options (serve --socket) go over the global ones. */
export function cliConfig(own: ConfigOverrides = {}): Config {
  return readConfig(process.env, { ...globalOptions, ...own });
}

/** The state dir the user named (--state-dir, else NETCTX_STATE_DIR), or undefined for the default. */
export function namedStateDir(): string | undefined {
  return globalOptions.stateDir || process.env.NETCTX_STATE_DIR;
}

/** The cluster options as commander hands them over (serve, cluster status, cluster forget). */
export interface ClusterOptions {
  etcd?: string;
  node?: string;
  underlay?: string;
  nodeTtl?: string;
  etcdCacert?: string;
  etcdCert?: string;
  etcdKey?: string;
}

/**
 * Adds the etcd options to a command; each goes over its variable (NETCTX_ETCD, NETCTX_ETCD_CACERT, ...).
 * `membership` adds the options only a joining engine has (--node, --underlay, --node-ttl).
 */
export function withClusterOptions(command: Command, etcdHelp: string, membership = true): Command {
  command.option("--etcd <urls>", `${etcdHelp}: http(s)://HOST:PORT[,...] (env NETCTX_ETCD)`);
  if (membership)
    command
      .option("--node <name>", "this node's name in the cluster (default: the hostname; env NETCTX_NODE)")
      .option(
        "--underlay <addr>",
        "the address peers reach this node at (default: the source of the route to etcd; env NETCTX_UNDERLAY)",
      )
      .option(
        "--node-ttl <seconds>",
        `seconds the node stays listed without renewing (default ${DEFAULT_NODE_TTL}; env NETCTX_NODE_TTL)`,
      );
  return command
    .option("--etcd-cacert <file>", "CA of etcd's server certificate (env NETCTX_ETCD_CACERT)")
    .option("--etcd-cert <file>", "client certificate for etcd (env NETCTX_ETCD_CERT)")
    .option("--etcd-key <file>", "the client certificate's key (env NETCTX_ETCD_KEY)");
}

export function clusterOptions(o: ClusterOptions): ConfigOverrides {
  return {
    etcd: o.etcd,
    node: o.node,
    underlay: o.underlay,
    nodeTtl: o.nodeTtl,
    etcdCacert: o.etcdCacert,
    etcdCert: o.etcdCert,
    etcdKey: o.etcdKey,
  };
}
