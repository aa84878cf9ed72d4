/**
 * CNI results (spec section 5.1) for the config's cniVersion: 0.4.0 carries `version` on each ip, 1.0.0 drops it,
 * 1.1.0 adds `mtu` on interfaces. When the plugin is not first in a chain, the previous result is passed through
 * and ours appended, with our interface indexes shifted past its interfaces.
 */
import type { NetConf, PrevResult } from "./spec.ts";
import { versionAtLeast } from "./spec.ts";

export interface ResultInterface {
  name: string;
  mac?: string;
  sandbox?: string;
  mtu?: number;
}

export interface ResultIp {
  address: string;
  gateway?: string;
  interface?: number;
}

export interface ResultRoute {
  dst: string;
  gw?: string;
}

export interface Result {
  interfaces: ResultInterface[];
  ips: ResultIp[];
  routes: ResultRoute[];
  dns?: NonNullable<NetConf["dns"]>;
}

export function mergePrev(prev: PrevResult | undefined, ours: Result): Result {
  if (!prev) return ours;
  const prevIfs: ResultInterface[] = (prev.interfaces ?? []).map((i) => ({
    name: i.name,
    ...(i.mac ? { mac: i.mac } : {}),
    ...(i.sandbox ? { sandbox: i.sandbox } : {}),
  }));
  const shift = prevIfs.length;
  const prevIps: ResultIp[] = (prev.ips ?? []).map((ip) => ({
    address: ip.address,
    ...(ip.gateway ? { gateway: ip.gateway } : {}),
    ...(ip.interface !== undefined ? { interface: ip.interface } : {}),
  }));
  const prevRoutes: ResultRoute[] = (prev.routes ?? []).map((r) => ({
    dst: r.dst,
    ...(r.gw ? { gw: r.gw } : {}),
  }));
  const dns = mergeDns(prev.dns, ours.dns);
  return {
    interfaces: [...prevIfs, ...ours.interfaces],
    ips: [
      ...prevIps,
      ...ours.ips.map((ip) => (ip.interface === undefined ? ip : { ...ip, interface: ip.interface + shift })),
    ],
    routes: [...prevRoutes, ...ours.routes],
    ...(dns ? { dns } : {}),
  };
}

/**
 * Our DNS servers and search domains first (the runtime writes them in this order; glibc asks the first
 * nameserver first), then the previous plugin's: neither is lost in a chain.
 */
function mergeDns(prev: Result["dns"], ours: Result["dns"]): Result["dns"] {
  if (!prev || !ours) return ours ?? prev;
  const both = (key: "nameservers" | "search" | "options") => {
    const list = [...new Set([...(ours[key] ?? []), ...(prev[key] ?? [])])];
    return list.length > 0 ? { [key]: list } : {};
  };
  const domain = ours.domain ?? prev.domain;
  return {
    ...both("nameservers"),
    ...(domain !== undefined ? { domain } : {}),
    ...both("search"),
    ...both("options"),
  };
}

/** The JSON a runtime reads, in the wire form of `version`. */
export function formatResult(version: string, r: Result): Record<string, unknown> {
  const v11 = versionAtLeast(version, "1.1.0");
  const v10 = versionAtLeast(version, "1.0.0");
  return {
    cniVersion: version,
    interfaces: r.interfaces.map((i) => {
      const { mtu, ...rest } = i;
      return v11 && mtu !== undefined ? { ...rest, mtu } : rest;
    }),
    ips: r.ips.map((ip) => (v10 ? ip : { version: ip.address.includes(":") ? "6" : "4", ...ip })),
    routes: r.routes,
    dns: r.dns ?? {},
  };
}
