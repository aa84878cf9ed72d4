/**
 * The CNI verbs on the netctx engine: the runtime's netns becomes an l2 context (its netns recorded as external,
 * so teardown never deletes it), named from the container id and ifname so DEL, CHECK and GC find it again.
 */
import { createHash } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { createContext, finishRemoval, removeContext, removeContextLater } from "../engine/contexts.ts";
import { servesDns } from "../engine/dns-feed.ts";
import { createNetwork } from "../engine/networks.ts";
import { missingFor } from "../engine/reconcile/gc.ts";
import { NetctxError } from "../errors.ts";
import type { Host } from "../host.ts";
import { Rtnl } from "../kernel/rtnl.ts";
import { specOf } from "../levels/driver.ts";
import { checkUserLabels, K8S_LABELS } from "../model/labels.ts";
import { LINK_GROUP } from "../model/names.ts";
import type { Bandwidth } from "../model/publish.ts";
import type { ContextRecord, NetworkRecord } from "../model/records.ts";
import { DnsNameSchema } from "../model/schemas.ts";
import { familyOf } from "../networks/common.ts";
import { networkDriver } from "../networks/registry.ts";
import { CniCode, CniError } from "./errors.ts";
import type { Result, ResultInterface, ResultRoute } from "./result.ts";
import { mergePrev } from "./result.ts";
import { type CniEnv, clip, type NetConf } from "./spec.ts";

export const LABEL_CONTAINER = "cni.containerId";
export const LABEL_IFNAME = "cni.ifname";
export const LABEL_CONFIG = "cni.config";

/** Context names are limited to 12 characters (nc-NAME must fit IFNAMSIZ): "c" + 11 hex of sha256(id, ifname). */
export function contextNameFor(containerId: string, ifname: string): string {
  return `c${createHash("sha256").update(`${containerId}\0${ifname}`).digest("hex").slice(0, 11)}`;
}

/** The config's `labels`, as a user's: netctx's own keys are refused (code 7, the config is invalid). */
function configLabels(conf: NetConf): Record<string, string> {
  if (!conf.labels) return {};
  try {
    checkUserLabels("labels", conf.labels);
  } catch (err) {
    if (err instanceof NetctxError) throw new CniError(CniCode.invalidConfig, err.message);
    throw err;
  }
  return conf.labels;
}

/** K8S_POD_NAMESPACE and K8S_POD_NAME from CNI_ARGS as the labels k8s.namespace and k8s.pod. */
function podLabels(env: CniEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [arg, label] of Object.entries(K8S_LABELS)) {
    const value = env.args.get(arg);
    if (value) out[label] = value;
  }
  return out;
}

/**
 * The DNS names a container answers to beside its context's: the pod or container name a runtime passes as
 * K8S_POD_NAME (podman and CRI runtimes do), and the `aliases` capability (podman's dnsname convention:
 * runtimeConfig.aliases maps network name to names). A name that is no DNS name (podman allows "_" in container
 * names) is left out rather than failing the container's start: its other names still answer.
 */
function dnsAliases(env: CniEnv, conf: NetConf, network: string): string[] {
  const byNetwork = conf.runtimeConfig?.["aliases"];
  const given =
    byNetwork && typeof byNetwork === "object" && !Array.isArray(byNetwork)
      ? (byNetwork as Record<string, unknown>)[network]
      : undefined;
  const names = [env.args.get("K8S_POD_NAME"), ...(Array.isArray(given) ? given : [])];
  return [
    ...new Set(names.filter((n): n is string => typeof n === "string" && DnsNameSchema.safeParse(n).success)),
  ];
}

/** Namespace files (a /run/netns bind mount, /proc/PID/ns/net) all live on nsfs: one device number. */
function isNamespaceFile(path: string): boolean {
  return statSync(path).dev === statSync("/proc/self/ns/net").dev;
}

export function networkNameOf(conf: NetConf): string {
  return conf.network ?? conf.name;
}

export function cniAdd(host: Host, env: CniEnv, conf: NetConf): Result {
  if (!existsSync(env.netns))
    throw new CniError(CniCode.unknownContainer, `CNI_NETNS ${clip(env.netns)} does not exist`);
  if (!isNamespaceFile(env.netns))
    throw new CniError(CniCode.invalidEnv, `CNI_NETNS ${clip(env.netns)} is not a network namespace`);
  const net = ensureNetwork(host, conf);
  const name = contextNameFor(env.containerId, env.ifname);
  // A DEL of this very attachment may still have its teardown queued: it goes first.
  finishRemoval(host, name);
  const existing = host.store.getContext(name);
  if (existing) {
    const spec = specOf(existing);
    // A record whose netns is gone is a leftover of a runtime that never called DEL: replace it.
    if (spec.netns === env.netns && existsSync(env.netns))
      throw new CniError(
        CniCode.conflict,
        `container ${env.containerId.slice(0, 12)} already has ${env.ifname} on network "${net.name}"`,
      );
    removeContext(host, name);
  }
  const ips = requestedIps(env, conf);
  const mac = env.args.get("MAC") ?? conf.runtimeConfig?.mac ?? stringArg(conf, "mac");
  const aliases = dnsAliases(env, conf, net.name);
  const record = createContext(host, {
    name,
    level: "l2",
    networks: [net.name],
    ips,
    ...(mac ? { mac } : {}),
    ifnames: [env.ifname],
    netns: env.netns,
    ...(aliases.length > 0 ? { aliases } : {}),
    labels: {
      ...configLabels(conf),
      ...podLabels(env),
      [LABEL_CONTAINER]: env.containerId,
      [LABEL_IFNAME]: env.ifname,
      [LABEL_CONFIG]: conf.name,
    },
    ...capabilities(conf),
  });
  return mergePrev(conf.prevResult, resultOf(host, record, net, conf));
}

/**
 * Idempotent: a missing context, netns or network is success; leases and host objects go either way. The kernel
 * teardown follows the reply (removeContextLater): the runtime deletes the netns next, and the veth goes with it.
 */
export function cniDel(host: Host, env: CniEnv): void {
  removeContextLater(host, contextNameFor(env.containerId, env.ifname));
}

export function cniCheck(host: Host, env: CniEnv, conf: NetConf): void {
  const prev = conf.prevResult;
  if (!prev)
    throw new CniError(CniCode.invalidConfig, "CHECK needs prevResult (the ADD result) in the config");
  const name = contextNameFor(env.containerId, env.ifname);
  const record = host.store.getContext(name);
  if (!record)
    throw new CniError(
      CniCode.unknownContainer,
      `no attachment for container ${env.containerId} ${env.ifname}`,
    );
  const spec = specOf(record);
  const att = spec.attachments[0];
  if (!att) throw new CniError(CniCode.checkFailed, `context ${name} has no attachment`);
  if (spec.netns !== env.netns)
    throw new CniError(CniCode.checkFailed, `attachment was made in ${spec.netns}, not ${env.netns}`);
  if (!existsSync(env.netns))
    throw new CniError(CniCode.unknownContainer, `CNI_NETNS ${clip(env.netns)} does not exist`);
  const fail = (msg: string) => new CniError(CniCode.checkFailed, `CHECK ${env.ifname}: ${msg}`);
  const host_ = host.rtnl.linkGet(att.hostIfname);
  if (!host_ || host_.group !== LINK_GROUP) throw fail(`host-side link ${att.hostIfname} is missing`);
  const rtnl = Rtnl.open(env.netns);
  try {
    const link = rtnl.linkGet(env.ifname);
    if (!link) throw fail("interface is missing in the container");
    if (!link.up) throw fail("interface is down");
    const have = new Set(rtnl.addrList(env.ifname).map((a) => a.cidr));
    // Our own record and the runtime's cached result must both agree with the kernel.
    const ourIfIndexes = new Set(
      (prev.interfaces ?? []).flatMap((i, idx) =>
        i.name === env.ifname && i.sandbox === env.netns ? [idx] : [],
      ),
    );
    const wanted = [
      ...att.addresses,
      ...(prev.ips ?? [])
        .filter((ip) => ip.interface !== undefined && ourIfIndexes.has(ip.interface))
        .map((ip) => ip.address),
    ];
    for (const cidr of wanted) if (!have.has(cidr)) throw fail(`address ${cidr} is missing`);
    const routes = [
      ...rtnl.routeList({ family: 4, table: 254 }),
      ...rtnl.routeList({ family: 6, table: 254 }),
    ];
    for (const r of prev.routes ?? []) {
      const fam = familyOf(r.dst);
      const dst = /^(0\.0\.0\.0|::)\/0$/.test(r.dst) ? "default" : r.dst;
      const found = routes.some(
        (k) => k.family === fam && k.dst === dst && (r.gw === undefined || k.gateway === r.gw),
      );
      if (!found) throw fail(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ""} is missing`);
    }
  } finally {
    rtnl.close();
  }
  // The host side: what gc would make or fix for this attachment and its network (engine/reconcile).
  const [missing] = missingFor(host, name);
  if (missing) throw fail(missing);
}

/** Removes every attachment of this config that the runtime no longer lists. Returns the removed names. */
export function cniGc(host: Host, conf: NetConf): string[] {
  const valid = conf["cni.dev/valid-attachments"];
  if (!valid) throw new CniError(CniCode.invalidConfig, 'GC needs "cni.dev/valid-attachments" in the config');
  const keep = new Set(valid.map((a) => contextNameFor(a.containerID, a.ifname)));
  const removed: string[] = [];
  for (const c of host.store.listContexts()) {
    const labels = specOf(c).labels;
    if (labels?.[LABEL_CONFIG] !== conf.name || keep.has(c.name)) continue;
    removeContext(host, c.name);
    removed.push(c.name);
  }
  return removed;
}

/** Ready for ADD: the state store opens and the network exists or the config can create it. */
export function cniStatus(host: Host, conf: NetConf): void {
  const name = networkNameOf(conf);
  if (!host.store.getNetwork(name) && !conf.subnets)
    throw new CniError(
      CniCode.notAvailable,
      `network "${clip(name)}" does not exist and the config has no "subnets" to create it`,
    );
}

function ensureNetwork(host: Host, conf: NetConf): NetworkRecord {
  const name = networkNameOf(conf);
  const existing = host.store.getNetwork(name);
  if (existing) return existing;
  if (!conf.subnets)
    throw new CniError(
      CniCode.invalidConfig,
      `network "${clip(name)}" does not exist and the config has no "subnets" to create it`,
    );
  const gateways = conf.gateway === undefined ? [] : [conf.gateway].flat();
  try {
    return createNetwork(host, {
      name,
      driver: conf.driver ?? "bridge",
      subnets: conf.subnets,
      ...(gateways.length ? { gateways } : {}),
      nat: conf.nat ?? conf.ipMasq ?? false,
      ...(conf.mtu !== undefined ? { mtu: conf.mtu } : {}),
    });
  } catch (err) {
    // Two containers started at once both found the network missing; the other one made it.
    const made = host.store.getNetwork(name);
    if (err instanceof NetctxError && err.code === "conflict" && made) return made;
    throw err;
  }
}

/** runtimeConfig `portMappings` and `bandwidth` (rates in bits/s; 0 or absent = unlimited) as context input. */
function capabilities(conf: NetConf): { publish?: string[]; bandwidth?: Bandwidth } {
  const rc = conf.runtimeConfig;
  const publish = (rc?.portMappings ?? []).map((m) => {
    const host =
      m.hostIP === undefined || m.hostIP === ""
        ? ""
        : m.hostIP.includes(":")
          ? `[${m.hostIP}]:`
          : `${m.hostIP}:`;
    return `${host}${m.hostPort}:${m.containerPort}/${(m.protocol ?? "tcp").toLowerCase()}`;
  });
  const b = rc?.bandwidth;
  const bandwidth: Bandwidth = {};
  if (b?.ingressRate) {
    bandwidth.ingressRate = b.ingressRate;
    if (b.ingressBurst) bandwidth.ingressBurst = b.ingressBurst;
  }
  if (b?.egressRate) {
    bandwidth.egressRate = b.egressRate;
    if (b.egressBurst) bandwidth.egressBurst = b.egressBurst;
  }
  const limited = bandwidth.ingressRate !== undefined || bandwidth.egressRate !== undefined;
  return { ...(publish.length ? { publish } : {}), ...(limited ? { bandwidth } : {}) };
}

function requestedIps(env: CniEnv, conf: NetConf): string[] {
  const fromArgs = (env.args.get("IP") ?? "").split(",").filter(Boolean);
  const fromRuntime = conf.runtimeConfig?.ips ?? [];
  const fromConfArgs = arrayArg(conf, "ips");
  return [...new Set([...fromArgs, ...fromRuntime, ...fromConfArgs].map((ip) => ip.split("/")[0]!))];
}

/** `args.cni.<key>` (the spec's convention for per-attachment args in the config). */
function cniArgs(conf: NetConf): Record<string, unknown> {
  const cni = conf.args?.["cni"];
  return cni !== null && typeof cni === "object" && !Array.isArray(cni)
    ? (cni as Record<string, unknown>)
    : {};
}

function stringArg(conf: NetConf, key: string): string | undefined {
  const v = cniArgs(conf)[key];
  return typeof v === "string" ? v : undefined;
}

function arrayArg(conf: NetConf, key: string): string[] {
  const v = cniArgs(conf)[key];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
}

function resultOf(host: Host, record: ContextRecord, net: NetworkRecord, conf: NetConf): Result {
  const spec = specOf(record);
  const interfaces: ResultInterface[] = [];
  const ips: Result["ips"] = [];
  const routes: ResultRoute[] = [];
  for (const att of spec.attachments) {
    for (const name of networkDriver(net.driver).hostInterfaces(net, att))
      interfaces.push(withMac({ name }, host.rtnl.linkGet(name)?.mac));
    const mac = spec.netns ? macIn(spec.netns, att.ifname) : undefined;
    const index = interfaces.length;
    interfaces.push(withMac({ name: att.ifname, sandbox: spec.netns ?? "", mtu: att.mtu }, mac));
    for (const address of att.addresses) {
      const gateway = att.gateways.find((g) => familyOf(g) === familyOf(address));
      ips.push({ address, ...(gateway ? { gateway } : {}), interface: index });
    }
    if (!net.internal)
      for (const gw of att.gateways) routes.push({ dst: familyOf(gw) === 4 ? "0.0.0.0/0" : "::/0", gw });
  }
  const dns =
    conf.dns ??
    networkDns(
      host,
      net,
      spec.attachments.flatMap((a) => a.gateways),
    );
  return { interfaces, ips, routes, ...(dns ? { dns } : {}) };
}

/**
 * The engine's DNS server for the runtime to write into the container's resolv.conf (podman and containerd read
 * `dns` from the result): the network's gateways on this host, NETWORK.DOMAIN to search. None for a `--no-dns`
 * network. A `dns` the config names itself wins: the administrator chose it.
 */
function networkDns(host: Host, net: NetworkRecord, gateways: string[]): Result["dns"] {
  if (!servesDns(net) || gateways.length === 0) return undefined;
  return {
    nameservers: [...gateways.filter((g) => familyOf(g) === 4), ...gateways.filter((g) => familyOf(g) === 6)],
    search: [`${net.name}.${host.config.dnsDomain}`],
  };
}

function macIn(netns: string, ifname: string): string | undefined {
  const rtnl = Rtnl.open(netns);
  try {
    return rtnl.linkGet(ifname)?.mac;
  } finally {
    rtnl.close();
  }
}

function withMac(i: ResultInterface, mac: string | undefined): ResultInterface {
  return mac ? { ...i, mac } : i;
}
