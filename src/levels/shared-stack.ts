/**
 * What the shared-stack levels (socket, l3) have in common: the context's addresses live on the host device of a
 * host network, and its processes live in a cgroup whose BPF programs confine their sockets to those addresses.
 */

import type { Host } from "../host.ts";
import { attachSocketPolicy, detachSocketPolicy } from "../kernel/bpf/socket-policy.ts";
import { createCgroup, removeCgroup } from "../kernel/cgroup.ts";
import { familyOf, tolerateMissing } from "../networks/common.ts";
import { addHostAddresses } from "../networks/host-net.ts";
import type { ContextRecord } from "../state/store.ts";
import { confinedArgv } from "./confine.ts";
import type { ContextSpec } from "./driver.ts";
import { specOf } from "./driver.ts";

export function firstAddress(spec: ContextSpec, family: 4 | 6): string | undefined {
  return spec.attachments
    .flatMap((a) => a.addresses)
    .find((a) => familyOf(a) === family)
    ?.split("/")[0];
}

export function confineContext(host: Host, spec: ContextSpec, fwmark?: number): void {
  const cgroup = spec.cgroup!;
  createCgroup(cgroup);
  for (const att of spec.attachments) addHostAddresses(host, att.ifname, att.addresses);
  const ipv4 = firstAddress(spec, 4);
  const ipv6 = firstAddress(spec, 6);
  attachSocketPolicy(cgroup, {
    ...(ipv4 ? { ipv4 } : {}),
    ...(ipv6 ? { ipv6 } : {}),
    ...(fwmark !== undefined ? { fwmark } : {}),
  });
}

export function releaseContext(host: Host, spec: ContextSpec): void {
  if (spec.cgroup) {
    detachSocketPolicy(spec.cgroup);
    removeCgroup(spec.cgroup);
  }
  for (const att of spec.attachments)
    for (const cidr of att.addresses) tolerateMissing(() => host.rtnl.addrDel(att.ifname, cidr));
}

export function sharedStackExecArgv(record: ContextRecord, command: string[]): string[] {
  return confinedArgv(specOf(record).cgroup!, command);
}
