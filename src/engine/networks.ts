/** Network lifecycle: validate, record, make the kernel objects; undo the record if the kernel refuses. */

import { conflict, invalid, notFound } from "../errors.ts";
import { type PortKind, prepareAntispoof, releaseIdleTables } from "../firewall/antispoof.ts";
import type { Host } from "../host.ts";
import { specOf } from "../levels/driver.ts";
import { checkName } from "../model/names.ts";
import { DEFAULT_DENY_OPTION, ISOLATE_OPTION } from "../model/policy.ts";
import type { NetworkRecord, SubnetRecord } from "../model/records.ts";
import { type NetworkInput, NetworkInputSchema, parseInput } from "../model/schemas.ts";
import {
  type Cidr,
  cidrContains,
  cidrsOverlap,
  formatIp,
  hostAt,
  lastAddress,
  parseIp,
  parseSubnet,
} from "../net/cidr.ts";
import { checkDriverOptions, networkDriver, portGuardOf } from "../networks/registry.ts";
import { opMark } from "./intent.ts";
import { syncPolicyTables } from "./policy-sync.ts";

export const DEFAULT_MTU = 1500;

/** Who makes a network: an apply of a scene, or (no scene) a command by hand. */
export interface NetworkOrigin {
  scene?: string;
}

export function createNetwork(host: Host, raw: unknown, origin: NetworkOrigin = {}): NetworkRecord {
  const record = checkedNetwork(host, raw, origin);
  refuseClusterScoped(record);
  return makeNetwork(host, record);
}

/** A cluster-scoped network is made and removed through etcd, by an engine that is a cluster member. */
function refuseClusterScoped(record: NetworkRecord): void {
  if (networkDriver(record.driver).scope === "cluster")
    throw invalid(
      "driver",
      `${record.driver} networks need \`netctx serve --etcd ...\`: they live in etcd, and this engine is not a cluster member`,
    );
}

/**
 * Records a checked network and makes its kernel objects (createNetwork, and engine/overlay.ts mirroring a network
 * of the cluster); undoes the record if the kernel refuses.
 */
export function makeNetwork(host: Host, record: NetworkRecord): NetworkRecord {
  const driver = networkDriver(record.driver);
  // The op mark tells gc that a crash left this network half made (it finishes it) while we are gone.
  host.store.insertNetwork({ ...record, op: opMark("create") });
  host.pause("network-create:after-record");
  try {
    host.enableForwarding();
    driver.create(host, record);
    // After the driver, like a repair does it, so a rebuilt ruleset lists the same as the original.
    const guard = portGuardOf(record);
    if (guard) prepareAntispoofOrUndo(host, record, guard);
  } catch (err) {
    host.store.deleteNetwork(record.name);
    throw err;
  }
  host.pause("network-create:before-ready");
  host.store.updateNetwork(record);
  // Only a network's switches or gateways change the tables; nothing is compiled unless some policy part exists.
  syncPolicyTables(host, []);
  return record;
}

/**
 * The record createNetwork would write, after every check it makes before writing (input, name, subnets, gateways,
 * the driver's own); the store's checks (name taken, subnets overlapping another network) come with the insert.
 * Reads the kernel (the default route's MTU), changes nothing: apply's dry run and pre-flight use it too.
 */
export function checkedNetwork(host: Host, raw: unknown, origin: NetworkOrigin = {}): NetworkRecord {
  const input = parseInput(NetworkInputSchema, raw);
  const record = networkRecord(host, input);
  if (origin.scene !== undefined) record.scene = origin.scene;
  networkDriver(record.driver).validate(record);
  return record;
}

/** The kinds of port the networks other than `leaving` guard: their anti-spoofing tables stay. */
function guardedBesides(host: Host, leaving: string): PortKind[] {
  return host.store.listNetworks().flatMap((n) => (n.name === leaving ? [] : (portGuardOf(n) ?? [])));
}

function prepareAntispoofOrUndo(host: Host, record: NetworkRecord, guard: PortKind): void {
  try {
    prepareAntispoof(host, guard);
  } catch (err) {
    try {
      networkDriver(record.driver).destroy(host, record);
      releaseIdleTables(host, guardedBesides(host, record.name));
    } catch {
      // The nft error is the one to report; gc removes what the undo could not.
    }
    throw err;
  }
}

/** Refuses while a context of this host is on the network. */
export function refuseNetworkUsers(host: Host, name: string): void {
  // Contexts whose removal is queued (host.defer) still count as users until it has run.
  host.flushDeferred();
  const users = host.store
    .listContexts()
    .filter((c) => specOf(c).attachments.some((a) => a.network === name))
    .map((c) => c.name);
  if (users.length > 0)
    throw conflict("network", `network "${name}" is in use by ${users.map((u) => `"${u}"`).join(", ")}`);
}

/**
 * `mirror`: the network is cluster-scoped and already gone from etcd (engine/overlay.ts); without it such a network
 * is refused, since removing only this node's copy would leave it in the cluster.
 */
export function removeNetwork(host: Host, name: string, opts: { mirror?: boolean } = {}): NetworkRecord {
  const record = host.store.getNetwork(name);
  if (!record) throw notFound("network", name);
  if (record.cluster && !opts.mirror) refuseClusterScoped(record);
  refuseNetworkUsers(host, name);
  host.store.updateNetwork({ ...record, op: opMark("remove") });
  host.pause("network-rm:after-mark");
  networkDriver(record.driver).destroy(host, record);
  // Anti-spoofing tables live as long as a network that uses them (a context coming and going keeps them).
  if (portGuardOf(record)) releaseIdleTables(host, guardedBesides(host, record.name));
  host.pause("network-rm:after-destroy");
  host.store.deleteNetwork(name);
  syncPolicyTables(host, []);
  // The last network's NAT table goes with it (Firewall.releaseIfIdle): its hooks would tax every host packet.
  if (host.store.listNetworks().length === 0) host.firewall((fw) => fw.releaseIfIdle());
  return record;
}

function networkRecord(host: Host, input: NetworkInput): NetworkRecord {
  checkName("name", input.name);
  checkDriverOptions(networkDriver(input.driver), input.options ?? {});
  if (input.nat && input.internal)
    throw invalid(
      "nat",
      "nat and internal exclude each other: an internal network has no egress to masquerade",
    );
  const subnets = input.subnets.map((text) => parseSubnet(text, "subnet"));
  for (const [i, a] of subnets.entries()) {
    const other = subnets.slice(i + 1).find((b) => cidrsOverlap(a, b));
    if (other) throw invalid("subnet", `${a.text} overlaps ${other.text}`);
  }
  const gateways = (input.gateways ?? []).map((text) => parseIp(text, "gateway"));
  // A cluster-scoped network has a gateway per node and block (cluster/blocks.ts), none of its own.
  if (networkDriver(input.driver).scope === "cluster") {
    if (gateways.length > 0)
      throw invalid(
        "gateway",
        `a ${input.driver} network has a gateway per node (the first address of each of its blocks): --gateway does not apply`,
      );
    return {
      name: input.name,
      driver: input.driver,
      subnets: subnets.map((s) => ({ cidr: s.text })),
      nat: input.nat ?? false,
      internal: input.internal ?? false,
      mtu: input.mtu ?? defaultRouteMtu(host),
      options: {
        ...(input.options ?? {}),
        antispoof: input.antispoof ?? true,
        ...switchOptions(input),
        ...dnsOption(input),
      },
    };
  }
  const subnetRecords: SubnetRecord[] = subnets.map((subnet) => {
    const mine = gateways.filter((g) => cidrContains(subnet, g.family, g.addr));
    if (mine.length > 1) throw invalid("gateway", `two gateways given for ${subnet.text}`);
    return { cidr: subnet.text, gateway: formatIp(subnet.family, gatewayFor(subnet, mine[0]?.addr)) };
  });
  for (const g of gateways) {
    if (!subnets.some((s) => cidrContains(s, g.family, g.addr)))
      throw invalid(
        "gateway",
        `${g.text} is outside the network's subnets (${subnets.map((s) => s.text).join(", ")})`,
      );
  }
  return {
    name: input.name,
    driver: input.driver,
    subnets: subnetRecords,
    nat: input.nat ?? false,
    internal: input.internal ?? false,
    mtu: input.mtu ?? defaultRouteMtu(host),
    options: {
      ...(input.options ?? {}),
      antispoof: input.antispoof ?? true,
      ...switchOptions(input),
      ...dnsOption(input),
    },
  };
}

/** `isolate` and `defaultDeny` as the record's options keep them (model/policy.ts), only when set. */
function switchOptions(input: NetworkInput): Record<string, boolean> {
  return {
    ...(input.isolate ? { [ISOLATE_OPTION]: true } : {}),
    ...(input.defaultDeny ? { [DEFAULT_DENY_OPTION]: true } : {}),
  };
}

/** `--no-dns` is kept as options.dns = false (engine/dns-feed.ts); a network with DNS carries no key for it. */
function dnsOption(input: NetworkInput): { dns?: false } {
  return input.dns === false ? { dns: false } : {};
}

/** The gateway holds one host address; the subnet must leave room for it and at least one context. */
function gatewayFor(subnet: Cidr, requested: bigint | undefined): bigint {
  const size = lastAddress(subnet) - subnet.network + 1n;
  const reserved = subnet.family === 4 ? 2n : 1n; // v4 network + broadcast; v6 subnet-router anycast
  if (size - reserved < 2n)
    throw invalid("subnet", `${subnet.text} is too small for a gateway and a context`);
  if (requested === undefined) return hostAt(subnet, 1n);
  const text = formatIp(subnet.family, requested);
  if (requested === subnet.network)
    throw invalid("gateway", `${text} is the network address of ${subnet.text}`);
  if (subnet.family === 4 && requested === lastAddress(subnet))
    throw invalid("gateway", `${text} is the broadcast address of ${subnet.text}`);
  return requested;
}

/** MTU of the device that carries the host's default route; 1500 when there is none (a fresh namespace). */
function defaultRouteMtu(host: Host): number {
  const route = host.rtnl.routeList({ family: 4, table: 254 }).find((r) => r.dst === "default" && r.devIndex);
  if (!route) return DEFAULT_MTU;
  return host.rtnl.linkList().find((l) => l.index === route.devIndex)?.mtu ?? DEFAULT_MTU;
}
