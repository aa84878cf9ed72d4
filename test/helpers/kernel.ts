/** The kernel's own view, through iproute2 and nft: the oracle every test checks against. */
import { execFileSync, spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

function json<T>(argv: string[]): T {
  const out = execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  return JSON.parse(out || "[]") as T;
}

export interface IpLink {
  ifname: string;
  mtu: number;
  address?: string;
  master?: string;
  operstate: string;
  flags: string[];
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}
export interface IpAddr {
  ifname: string;
  addr_info: { family: string; local: string; prefixlen: number; tentative?: boolean }[];
}
export interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  table?: string;
  prefsrc?: string;
}

function inNs(netns: string | undefined, argv: string[]): string[] {
  return netns ? ["nsenter", `--net=${netns}`, "--", ...argv] : argv;
}

export function links(netns?: string): IpLink[] {
  return json<IpLink[]>(inNs(netns, ["ip", "-j", "-d", "link", "show"]));
}

export function addrs(netns?: string): IpAddr[] {
  return json<IpAddr[]>(inNs(netns, ["ip", "-j", "addr", "show"]));
}

export function routes(family: 4 | 6, netns?: string, table = "main"): IpRoute[] {
  return json<IpRoute[]>(inNs(netns, ["ip", "-j", `-${family}`, "route", "show", "table", table]));
}

export function addressesOf(netns: string | undefined, ifname: string): string[] {
  return addrs(netns)
    .filter((a) => a.ifname === ifname)
    .flatMap((a) =>
      a.addr_info.filter((i) => !i.local.startsWith("fe80")).map((i) => `${i.local}/${i.prefixlen}`),
    );
}

export function netnsNames(): string[] {
  return readdirSync("/run/netns").sort();
}

export function nftRuleset(): string {
  const r = spawnSync("nft", ["-j", "list", "ruleset"], { encoding: "utf8" });
  return r.stdout;
}

/** Everything netctx could have touched, for "nothing changed" comparisons. */
export function kernelSnapshot(): string {
  return JSON.stringify({
    links: links().map((l) => [l.ifname, l.master, l.mtu]),
    addrs: addrs().map((a) => [a.ifname, a.addr_info.map((i) => i.local)]),
    routes4: routes(4),
    routes6: routes(6),
    netns: netnsNames(),
    nft: nftRuleset(),
  });
}

export function ping(netns: string, address: string): boolean {
  return (
    spawnSync("nsenter", [`--net=${netns}`, "--", "ping", "-n", "-q", "-c", "1", "-W", "1", address])
      .status === 0
  );
}

/**
 * Wait until the kernel agrees: rm deletes a context's netns and the kernel removes its veth pair a moment later
 * (asynchronously, in its netns cleanup work).
 */
export function eventually<T>(read: () => T, expected: T, timeoutMs = 5000): T {
  const deadline = Date.now() + timeoutMs;
  let value = read();
  while (JSON.stringify(value) !== JSON.stringify(expected) && Date.now() < deadline) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    value = read();
  }
  return value;
}

/** A process's name as the kernel keeps it; undefined once it is gone. */
export function commOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return undefined;
  }
}
