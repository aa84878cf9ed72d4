/** What the auditor knows about each context before probing: addresses, devices, MACs, probe targets. */
import { existsSync } from "node:fs";
import type { Host } from "../host.ts";
import { Rtnl } from "../kernel/rtnl.ts";
import { specOf } from "../levels/driver.ts";
import { levelDriver } from "../levels/registry.ts";
import type { ContextRecord, NetworkRecord } from "../model/records.ts";
import { formatIp, lastAddress, parseIp, parseSubnet } from "../net/cidr.ts";
import type { Attachment } from "../networks/driver.ts";
import { networkDriver } from "../networks/registry.ts";

export interface Subject {
  record: ContextRecord;
  name: string;
  shared: boolean;
  own4: string;
  net: NetworkRecord;
  att: Attachment;
  gateway4: string;
  /** Host device the context's traffic arrives on: its network's bridge, or its routed veth ("" when offHost). */
  hostDevice: string;
  /**
   * The host is not on its path (a macvlan's parent segment): only the reach matrix takes such a context, for the
   * cells between it and the contexts of its own network.
   */
  offHost?: boolean;
  /** Its network puts its contexts on one L2 segment (a bridge), not on a link each to the host. */
  segment: boolean;
  /** Where its network's driver guards ports (on a --no-antispoof network too: the audit shows what that costs). */
  guard?: "bridge" | "routed";
  /** A destination the context routes to (and, for bridge and host networks, the host too). */
  probeDst: string;
  /** An address of the context's network that nobody holds. */
  spare4: string;
  netns?: string;
  mac?: string;
  gwMac?: string;
  /** l3: its own table holds an IPv4 default route (read from the kernel), which makes the table authoritative. */
  ownDefaultRoute4?: boolean;
}

export function first4(att: Attachment): string | undefined {
  return att.addresses.map((a) => a.split("/")[0]!).find((a) => !a.includes(":"));
}

export function subjectsOf(
  host: Host,
  records: ContextRecord[],
  opts: { offHost?: boolean } = {},
): { subjects: Subject[]; skipped: string[] } {
  const subjects: Subject[] = [];
  const skipped: string[] = [];
  const perNetwork = new Map<string, number>();
  for (const record of records) {
    const spec = specOf(record);
    const att = spec.attachments.find((a) => first4(a) !== undefined);
    const net = att ? host.store.getNetwork(att.network) : undefined;
    const gateway4 = net?.subnets.find((s) => !s.cidr.includes(":"))?.gateway;
    if (!att || !net || !gateway4 || record.status !== "ready") {
      skipped.push(record.name);
      continue;
    }
    const shared = levelDriver(record.level).sharedStack;
    const driver = networkDriver(net.driver);
    const hostDevice = driver.hostDevice(net, att);
    if (hostDevice === undefined && opts.offHost) {
      subjects.push({
        record,
        name: record.name,
        shared,
        own4: first4(att)!,
        net,
        att,
        gateway4,
        hostDevice: "",
        offHost: true,
        segment: driver.sharedSegment,
        probeDst: gateway4,
        spare4: gateway4,
      });
      continue;
    }
    if (hostDevice === undefined) {
      // The host is not on its path (a macvlan's parent segment): the probes that go through the host cannot run.
      skipped.push(record.name);
      continue;
    }
    const taken = new Set(host.store.leases({ network: net.name }).map((l) => l.address));
    taken.add(gateway4);
    // Each context gets spare addresses of its own: two probes aiming at one destination would overwrite
    // each other's PMTU exception or neighbour entry.
    const k = perNetwork.get(net.name) ?? 0;
    perNetwork.set(net.name, k + 1);
    const spares = spareAddresses(net, taken, 2 * k + 2).slice(2 * k);
    const s: Subject = {
      record,
      name: record.name,
      shared,
      own4: first4(att)!,
      net,
      att,
      gateway4,
      hostDevice,
      segment: driver.sharedSegment,
      ...(driver.portGuard ? { guard: driver.portGuard } : {}),
      // Routed contexts hold /32s: the only on-link destination they route without a default route is the gateway.
      probeDst: driver.sharedSegment ? (spares[0] ?? gateway4) : gateway4,
      spare4: spares[1] ?? spares[0] ?? gateway4,
    };
    if (spec.table !== undefined)
      s.ownDefaultRoute4 = host.rtnl
        .routeList({ family: 4, table: spec.table })
        .some((r) => r.dst === "default");
    if (!shared && spec.netns && existsSync(spec.netns)) {
      s.netns = spec.netns;
      const rtnl = Rtnl.open(spec.netns);
      try {
        const mac = rtnl.linkGet(att.ifname)?.mac;
        if (mac) s.mac = mac;
      } finally {
        rtnl.close();
      }
      const gwMac = host.rtnl.linkGet(hostDevice)?.mac;
      if (gwMac) s.gwMac = gwMac;
    }
    subjects.push(s);
  }
  return { subjects, skipped };
}

/** The highest free IPv4 host addresses of the network's first IPv4 subnet. */
function spareAddresses(net: NetworkRecord, taken: Set<string>, count: number): string[] {
  const subnet = net.subnets.find((s) => !s.cidr.includes(":"));
  if (!subnet) return [];
  const c = parseSubnet(subnet.cidr, "subnet");
  const out: string[] = [];
  for (let a = lastAddress(c) - 1n; a > c.network && out.length < count; a--) {
    const text = formatIp(4, a);
    if (!taken.has(parseIp(text, "address").text)) out.push(text);
  }
  return out;
}

/** The second context each probe compares with: same network first, then the same kind of stack, then any. */
export function secondOf(s: Subject, all: Subject[]): Subject | undefined {
  const others = all.filter((o) => o !== s);
  return (
    others.find((o) => o.net.name === s.net.name && o.shared === s.shared) ??
    others.find((o) => o.shared === s.shared) ??
    others[0]
  );
}
