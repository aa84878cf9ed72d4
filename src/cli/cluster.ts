/**
 * netctx cluster status|forget. Through the local engine, like every other verb: it holds the etcd client, its TLS
 * files and its own membership (so status can say whether this node is registered and why not). With --etcd the
 * CLI asks etcd itself instead: for a host whose engine is down, or an operator's machine outside the cluster.
 */
import type { Command } from "commander";
import { callEngine } from "../api/client.ts";
import { Etcd } from "../cluster/etcd.ts";
import { type Forgotten, forgetNode } from "../cluster/forget.ts";
import type { MemberStatus } from "../cluster/member.ts";
import { type ClusterStatus, clusterStatus } from "../cluster/status.ts";
import { NetctxError } from "../errors.ts";
import { type ClusterOptions, cliConfig, clusterOptions, withClusterOptions } from "./config.ts";
import { printJson, printTable } from "./output.ts";

export function registerCluster(program: Command): void {
  const cluster = program
    .command("cluster")
    .description("the hosts that share overlay networks through etcd");

  const status = cluster
    .command("status")
    .description("nodes, underlay addresses, lease age and TTL left, blocks and contexts per node")
    .option("--json", "JSON output");
  withClusterOptions(status, "ask this etcd directly instead of the local engine", false);
  status.action(async (o: { json?: boolean } & ClusterOptions) => {
    const s = await ask<ClusterStatus>(
      o,
      (socket) => callEngine<MemberStatus>(socket, "GET", "/v1/cluster"),
      (etcd) => clusterStatus(etcd),
    );
    if (o.json) return printJson(s);
    printTable(
      ["NODE", "UNDERLAY", "CONTEXTS", "BLOCKS", "LEASE AGE", "TTL LEFT"],
      s.nodes.map((n) => [
        n.name === s.self ? `${n.name} (this node)` : n.name,
        n.underlay,
        String(n.contexts),
        n.blocks.map((b) => `${b.network}:${b.cidr}`).join(",") || "-",
        `${n.leaseAge}s`,
        n.ttlLeft === undefined ? "expired" : `${n.ttlLeft}/${n.ttl}s`,
      ]),
    );
    const member = (s as Partial<MemberStatus>).member;
    if (member && !member.registered)
      console.log(`this node (${member.name}) is not registered: ${member.error ?? "registering"}`);
  });

  const forget = cluster
    .command("forget")
    .description("remove a node's record and free its address blocks now (for a node that is gone for good)")
    .argument("<node>")
    .option("--json", "JSON output");
  withClusterOptions(forget, "ask this etcd directly instead of the local engine", false);
  forget.action(async (node: string, o: { json?: boolean } & ClusterOptions) => {
    const f = await ask<Forgotten>(
      o,
      (socket) => callEngine<Forgotten>(socket, "DELETE", `/v1/cluster/nodes/${encodeURIComponent(node)}`),
      (etcd) => forgetNode(etcd, node),
    );
    if (o.json) return printJson(f);
    console.log(`forgot node ${f.node}${f.blocks.length ? `, freed ${f.blocks.length} block(s)` : ""}`);
  });
}

/**
 * The engine's answer, or etcd's when --etcd is given (or no engine runs and NETCTX_ETCD is set). The direct client
 * is closed afterwards: its gRPC channels would keep the process alive.
 */
async function ask<T>(
  o: ClusterOptions,
  viaEngine: (socket: string) => Promise<T | undefined>,
  direct: (etcd: Etcd) => Promise<T>,
): Promise<T> {
  const config = cliConfig(clusterOptions(o));
  if (o.etcd === undefined) {
    const answer = await viaEngine(config.socketPath);
    if (answer !== undefined) return answer;
  }
  if (!config.cluster)
    throw new NetctxError(
      "invalid",
      "cluster: no engine runs here and no etcd is named: start netctx serve --etcd URL, or pass --etcd URL",
      "etcd",
    );
  const etcd = await Etcd.open(config.cluster);
  try {
    return await direct(etcd);
  } finally {
    etcd.close();
  }
}
