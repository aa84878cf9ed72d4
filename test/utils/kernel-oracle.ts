/**
 * The kernel's own view, through iproute2 and nft as JSON: the one oracle every test checks netctx against. It reads
 * with the kernel's tools and never through src/, so a bug there cannot hide itself here.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { inNetns } from "./netns.ts";

export type Json = Record<string, unknown>;

/** `ip -j ARGS`, in the netns at path `netns` when given; [] when ip prints nothing. */
export function ipj<T = Json>(args: string[], netns?: string): T[] {
  const argv = inNetns(netns, ["ip", "-j", ...args]);
  const out = execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  return JSON.parse(out.trim() || "[]") as T[];
}

export interface IpLink {
  ifindex: number;
  ifname: string;
  mtu: number;
  address?: string;
  master?: string;
  operstate: string;
  flags: string[];
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown>; info_slave_kind?: string };
}
export interface IpAddr {
  ifname: string;
  addr_info: {
    family: string;
    local: string;
    prefixlen: number;
    scope: string;
    tentative?: boolean;
    nodad?: boolean;
  }[];
}
export interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  table?: string;
  prefsrc?: string;
  protocol?: string;
  flags?: string[];
}
export interface IpRule {
  priority: number;
  src?: string;
  srclen?: number;
  fwmark?: string;
  table: string;
}

export function links(netns?: string): IpLink[] {
  return ipj<IpLink>(["-d", "link", "show"], netns);
}

/** One link with its details (`ip -d link show dev NAME`); throws when there is none. */
export function ipLink<T = Json>(name: string, netns?: string): T {
  const [link] = ipj<T>(["-d", "link", "show", "dev", name], netns);
  if (!link) throw new Error(`ip link show ${name}: nothing`);
  return link;
}

export function ipLinkNames(netns?: string): string[] {
  return ipj(["link", "show"], netns).map((l) => String(l.ifname));
}

export function linkInfo(link: Json): { info_kind?: string; info_data?: Json; info_slave_kind?: string } {
  return (link.linkinfo ?? {}) as { info_kind?: string; info_data?: Json };
}

/** Packets a link sent (its tx counter): a veth's counts what went into its peer's namespace. */
export function txPackets(ifname: string, netns?: string): number {
  return ipj<{ stats64: { tx: { packets: number } } }>(["-s", "link", "show", "dev", ifname], netns)[0]!
    .stats64.tx.packets;
}

/** How many packets a link sent while `traffic` ran. */
export function sentDuring(ifname: string, traffic: () => void): number {
  const before = txPackets(ifname);
  traffic();
  return txPackets(ifname) - before;
}

export function addrs(netns?: string): IpAddr[] {
  return ipj<IpAddr>(["addr", "show"], netns);
}

/** "10.1.0.2/24" strings of an interface, link-local IPv6 left out. */
export function addressesOf(netns: string | undefined, ifname: string): string[] {
  return addrs(netns)
    .filter((a) => a.ifname === ifname)
    .flatMap((a) =>
      a.addr_info.filter((i) => !i.local.startsWith("fe80")).map((i) => `${i.local}/${i.prefixlen}`),
    );
}

/** An interface's addresses, link-local IPv6 left out, with their family and nodad flag. */
export function ipAddrs(ifname: string, netns?: string): { cidr: string; family: string; nodad: boolean }[] {
  const [entry] = ipj<IpAddr>(["addr", "show", "dev", ifname], netns);
  return (entry?.addr_info ?? [])
    .filter((i) => !i.local.startsWith("fe80"))
    .map((i) => ({ cidr: `${i.local}/${i.prefixlen}`, family: i.family, nodad: i.nodad === true }));
}

export function routes(family: 4 | 6, netns?: string, table = "main"): IpRoute[] {
  return ipj<IpRoute>([`-${family}`, "route", "show", "table", table], netns);
}

export function rules(family: 4 | 6, netns?: string): IpRule[] {
  return ipj<IpRule>([`-${family}`, "rule", "show"], netns);
}

/** The MAC a neighbour entry holds for `ip` (on `dev` when told); undefined without one. */
export function neighbourMac(ip: string, opts: { dev?: string; netns?: string } = {}): string | undefined {
  const dev = opts.dev ? ["dev", opts.dev] : [];
  return ipj<{ lladdr?: string }>(["neigh", "show", ip, ...dev], opts.netns)[0]?.lladdr;
}

export function netnsNames(): string[] {
  return readdirSync("/run/netns").sort();
}

export function nftRuleset(): string {
  const r = spawnSync("nft", ["-j", "list", "ruleset"], { encoding: "utf8" });
  return r.stdout;
}

/** The objects of one nft table (`nft -j list table`); throws when it is not there. */
export function nftTable(family = "inet", name = "netctx"): Json[] {
  const out = execFileSync("nft", ["-j", "list", "table", family, name], { encoding: "utf8" });
  return (JSON.parse(out) as { nftables: Json[] }).nftables;
}

/** How many rules one nft table holds. */
export function nftRuleCount(family = "inet", name = "netctx"): number {
  return nftTable(family, name).filter((o) => "rule" in o).length;
}

/** Elements of one of our nft sets as plain text ("nc-x", "nc-x . 10.1.0.0/24"), sorted; [] without it. */
export function nftSet(name: string, family = "inet"): string[] {
  let out: string;
  try {
    out = execFileSync("nft", ["-j", "list", "set", family, "netctx", name], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
  } catch {
    return [];
  }
  const objs = (JSON.parse(out) as { nftables: Json[] }).nftables;
  const set = objs.find((o) => "set" in o)?.["set"] as { elem?: unknown[] } | undefined;
  const text = (v: unknown): string => {
    if (typeof v === "string") return v;
    const r = v as Json;
    if (r["elem"]) return text((r["elem"] as Json)["val"]);
    if (r["concat"]) return (r["concat"] as unknown[]).map(text).join(" . ");
    if (r["prefix"]) {
      const p = r["prefix"] as { addr: string; len: number };
      return `${p.addr}/${p.len}`;
    }
    return JSON.stringify(v);
  };
  return (set?.elem ?? []).map(text).sort();
}

/**
 * A dump without route flags: a port-less bridge or host network device gains and loses "linkdown" with its
 * carrier, on the kernel's schedule rather than ours, so "nothing changed" comparisons must not see it.
 */
export function withoutRouteFlags<T>(dump: T): T {
  return JSON.parse(JSON.stringify(dump, (k, x: unknown) => (k === "flags" ? undefined : x))) as T;
}

/** Everything netctx could have touched, for "nothing changed" comparisons. */
export function kernelSnapshot(): string {
  return JSON.stringify({
    links: links().map((l) => [l.ifname, l.master, l.mtu]),
    addrs: addrs().map((a) => [a.ifname, a.addr_info.map((i) => i.local)]),
    routes4: withoutRouteFlags(routes(4)),
    routes6: withoutRouteFlags(routes(6)),
    netns: netnsNames(),
    nft: nftRuleset(),
  });
}
