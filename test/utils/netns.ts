/**
 * Network namespaces for tests: where they are, running a command in one, and namespaces the tests make themselves
 * (an "outside", an upstream router, a runtime's container netns) hanging off the host by a veth.
 */
import { spawnSync } from "node:child_process";
import { must } from "./shell.ts";

export const netnsPath = (name: string) => `/run/netns/${name}`;

/** The netns of l2 context `name`. */
export const contextNetns = (name: string) => netnsPath(`netctx-${name}`);

/** The test file's own namespace (its throwaway host), for commands that take a netns path. */
export const HOST_NETNS = "/proc/self/ns/net";

/** argv that runs `argv` in the netns at path `netns` (nsenter works for any path); as is without one. */
export function inNetns(netns: string | undefined, argv: string[]): string[] {
  return netns ? ["nsenter", `--net=${netns}`, "--", ...argv] : argv;
}

/** An empty named netns with lo up, as a container runtime makes one; returns its path. */
export function addNetns(name: string): string {
  const r = spawnSync("ip", ["netns", "add", name], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip netns add ${name}: ${r.stderr}`);
  spawnSync("ip", ["-n", name, "link", "set", "lo", "up"]);
  return netnsPath(name);
}

export function delNetns(name: string): void {
  spawnSync("ip", ["netns", "del", name]);
}

export interface VethNetns {
  /** The netns name. */
  name: string;
  /** The host end of the veth; its peer is eth0 inside. */
  hostIfname: string;
  /** A bridge the host end becomes a port of. */
  master?: string;
  /** CIDRs on the host end, and on eth0 and lo inside; IPv6 ones on a veth without DAD. */
  hostAddresses?: string[];
  addresses?: string[];
  loAddresses?: string[];
  /** `ip route add` arguments on the host (after its end is up) and inside, in order ("default via 10.0.0.1"). */
  hostRoutes?: string[];
  routes?: string[];
}

const nodad = (cidr: string) => (cidr.includes(":") ? ["nodad"] : []);
const family = (args: string) => (args.includes(":") ? ["-6"] : []);

/** A netns behind a veth from the host, addressed and routed as told, lo and both ends up; returns its path. */
export function addVethNetns(o: VethNetns): string {
  const inside = (args: string[]) => must(["ip", "-n", o.name, ...args]);
  must(["ip", "netns", "add", o.name]);
  must(["ip", "link", "add", o.hostIfname, "type", "veth", "peer", "name", "eth0", "netns", o.name]);
  // Links up before their addresses: an IPv6 address added to the veth while it was down left the host unable to
  // reach the other side over IPv6 (l2/nat's masquerade test), where the same address added after `up` works.
  must(["ip", "link", "set", o.hostIfname, ...(o.master ? ["master", o.master] : []), "up"]);
  for (const a of o.hostAddresses ?? []) must(["ip", "addr", "add", a, "dev", o.hostIfname, ...nodad(a)]);
  for (const r of o.hostRoutes ?? []) must(["ip", ...family(r), "route", "add", ...r.split(" ")]);
  inside(["link", "set", "lo", "up"]);
  inside(["link", "set", "eth0", "up"]);
  for (const a of o.addresses ?? []) inside(["addr", "add", a, "dev", "eth0", ...nodad(a)]);
  for (const a of o.loAddresses ?? []) inside(["addr", "add", a, "dev", "lo"]);
  for (const r of o.routes ?? []) inside([...family(r), "route", "add", ...r.split(" ")]);
  return netnsPath(o.name);
}

/** Undo addVethNetns (what is already gone is fine). */
export function delVethNetns(o: Pick<VethNetns, "name" | "hostIfname">): void {
  spawnSync("ip", ["link", "del", o.hostIfname]);
  delNetns(o.name);
}
