/** What `inspect` and `ls` show of a context: the record plus what the kernel says now. */
import { existsSync } from "node:fs";
import type { Host } from "../host.ts";
import { Rtnl } from "../kernel/rtnl.ts";
import { specOf } from "../levels/driver.ts";
import { type Bandwidth, formatPublish } from "../model/publish.ts";
import type { ContextRecord } from "../model/records.ts";
import { liveBandwidth } from "../networks/bandwidth.ts";

export interface InterfaceView {
  name: string;
  network: string;
  hostIfname?: string;
  addresses: string[];
  gateways: string[];
  mac?: string;
  mtu: number;
}

export interface ContextView {
  name: string;
  level: string;
  status: string;
  networks: string[];
  addresses: string[];
  netns?: string;
  cgroup?: string;
  table?: number;
  interfaces: InterfaceView[];
  /** `[HOSTIP:]HOSTPORT:PORT/proto` as recorded. */
  publish?: string[];
  /** Recorded limits (bits per second) and, live, what tc holds now. */
  bandwidth?: Bandwidth & { live?: ReturnType<typeof liveBandwidth> };
  createdAt?: string;
}

export function contextView(host: Host, record: ContextRecord, live = true): ContextView {
  const spec = specOf(record);
  const macs = live && spec.netns ? liveMacs(spec.netns) : new Map<string, string>();
  const interfaces = spec.attachments.map((a): InterfaceView => {
    const mac = macs.get(a.ifname) ?? a.mac;
    return {
      name: a.ifname,
      network: a.network,
      ...(a.hostIfname ? { hostIfname: a.hostIfname } : {}),
      addresses: a.addresses,
      gateways: a.gateways,
      ...(mac ? { mac } : {}),
      mtu: a.mtu,
    };
  });
  return {
    name: record.name,
    level: record.level,
    status: record.status,
    networks: spec.attachments.map((a) => a.network),
    addresses: spec.attachments.flatMap((a) => a.addresses),
    ...(spec.netns ? { netns: spec.netns } : {}),
    ...(spec.cgroup ? { cgroup: spec.cgroup } : {}),
    ...(spec.table !== undefined ? { table: spec.table } : {}),
    interfaces,
    ...(spec.publish?.length ? { publish: spec.publish.map(formatPublish) } : {}),
    ...(spec.bandwidth
      ? { bandwidth: bandwidthView(host, spec.bandwidth, live ? spec.attachments[0]?.hostIfname : undefined) }
      : {}),
    ...(record.createdAt ? { createdAt: record.createdAt } : {}),
  };
}

function bandwidthView(
  host: Host,
  bw: Bandwidth,
  hostIfname: string | undefined,
): Bandwidth & { live?: ReturnType<typeof liveBandwidth> } {
  return hostIfname ? { ...bw, live: liveBandwidth(host, hostIfname) } : { ...bw };
}

function liveMacs(netns: string): Map<string, string> {
  const macs = new Map<string, string>();
  if (!existsSync(netns)) return macs;
  const rtnl = Rtnl.open(netns);
  try {
    for (const link of rtnl.linkList()) if (link.mac) macs.set(link.name, link.mac);
  } finally {
    rtnl.close();
  }
  return macs;
}
