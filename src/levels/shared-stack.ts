/**
 * What the shared-stack levels (socket, l3) have in common: the context's addresses live on the host device of a
 * host network, and its processes live in a cgroup whose BPF programs confine their sockets to those addresses.
 */

import { existsSync } from "node:fs";
import { basename } from "node:path";
import { errorLine } from "../errors.ts";
import type { Host } from "../host.ts";
import { attachSocketPolicy, policyDrift, type SocketPolicy } from "../kernel/bpf/socket-policy.ts";
import { createCgroup, removeCgroupTree, setCgroupXattr } from "../kernel/cgroup.ts";
import { KernelError } from "../kernel/errors.ts";
import type { ContextRecord } from "../model/records.ts";
import { STORE_XATTR } from "../model/store-mark.ts";
import { dropCountersIfAny, knownDropCounters } from "../networks/cgroup-counters.ts";
import { familyOf, tolerateMissing } from "../networks/common.ts";
import { addHostAddresses } from "../networks/host-net.ts";
import { addressId, type Declarer } from "../networks/ownership.ts";
import type { ContextSpec, ExecSandbox, LevelDriver } from "./driver.ts";
import { BASE_CAPABILITIES, specOf } from "./driver.ts";
import { refuseWhileRunning } from "./processes.ts";

export function firstAddress(spec: ContextSpec, family: 4 | 6): string | undefined {
  return spec.attachments
    .flatMap((a) => a.addresses)
    .find((a) => familyOf(a) === family)
    ?.split("/")[0];
}

export function confineContext(host: Host, spec: ContextSpec, fwmark?: number): void {
  const cgroup = spec.cgroup!;
  createCgroup(cgroup);
  markCgroup(host, cgroup);
  host.pause("create:after-cgroup");
  for (const att of spec.attachments) addHostAddresses(host, att.ifname, att.addresses);
  host.pause("create:after-addresses");
  attachCounted(host, cgroup, addressPolicy(spec, fwmark));
}

/** The socket policy, its packet programs counting their refusals into the traffic counters (cgroup-counters.ts). */
export function attachCounted(host: Host, cgroup: string, policy: SocketPolicy): void {
  const dropCounters = dropCountersIfAny(host);
  attachSocketPolicy(cgroup, dropCounters === undefined ? policy : { ...policy, dropCounters });
}

/** Which store made the cgroup (model/store-mark.ts); a kernel that keeps no user xattrs (before 5.7) leaves it unmarked. */
function markCgroup(host: Host, cgroup: string): void {
  try {
    setCgroupXattr(cgroup, STORE_XATTR, host.store.id);
  } catch (err) {
    if (!(err instanceof KernelError && err.errnoName === "EOPNOTSUPP")) throw err;
  }
}

/**
 * The socket policy of the context's addresses (its first of each family), with its sockets' fwmark for l3 and the
 * host loopback ports it may reach.
 */
export function addressPolicy(spec: ContextSpec, fwmark?: number): SocketPolicy {
  const ipv4 = firstAddress(spec, 4);
  const ipv6 = firstAddress(spec, 6);
  return {
    ...(ipv4 ? { ipv4 } : {}),
    ...(ipv6 ? { ipv6 } : {}),
    ...(fwmark !== undefined ? { fwmark } : {}),
    ...(spec.allowHostPorts?.length ? { hostPorts: spec.allowHostPorts } : {}),
  };
}

/**
 * Refuses while processes still run in the cgroup's subtree, before anything is undone (rm checks the same before it
 * marks the record; this is the net behind it). Then the cgroup goes, with its programs: see releaseCgroup.
 */
export function releaseContext(host: Host, spec: ContextSpec): void {
  if (spec.cgroup) {
    releaseCgroup(spec.cgroup);
    host.pause("rm:after-bpf");
  }
  for (const att of spec.attachments)
    for (const cidr of att.addresses) tolerateMissing(() => host.rtnl.addrDel(att.ifname, cidr));
}

/**
 * Remove a context's cgroup and every child cgroup below it, refusing while any process runs in them. The programs
 * are not detached: rmdir takes them along, and the kernel refuses the rmdir (EBUSY) while a process is in the
 * cgroup, atomically with processes moving in. A check followed by a detach would leave a process that joined in
 * between on the host's stack unconfined. Sockets made in the cgroup keep it, and its programs, in force after it
 * is gone (measured: a foreign bind on such a socket still fails with EPERM).
 */
export function releaseCgroup(cgroup: string): void {
  refuseWhileRunning(basename(cgroup), { cgroup });
  removeCgroupTree(cgroup);
}

/**
 * The cgroup carries the socket policy, so root must not leave it nor touch the programs: no sys_admin (cgroupfs
 * and mounts), bpf or perfmon. No net_admin (the host's routes and devices), no net_raw and no AF_PACKET (the
 * creation hook does not see packet sockets), no AF_VSOCK (not a netns object: it reaches the host). No setuid or
 * setgid: another user's processes would be no closer, but nothing a shared-stack service needs them for either.
 * The abstract unix namespace belongs to the netns, which is the host's: Landlock keeps it inside the exec.
 */
export function sharedStackSandbox(record: ContextRecord): ExecSandbox {
  return {
    cgroup: specOf(record).cgroup!,
    keepCaps: BASE_CAPABILITIES,
    families: ["unix", "inet", "inet6", "netlink"],
    scopeAbstractUnix: true,
  };
}

export const sharedStackAnchor: LevelDriver["anchorMissing"] = (record) => {
  const cgroup = specOf(record).cgroup;
  return cgroup && !existsSync(cgroup) ? `its cgroup ${cgroup} is gone` : undefined;
};

/**
 * A shared-stack context owns its cgroup, whose programs must hold `policy` (compared while the context is ready, and
 * attached again when they differ), and its addresses on its networks' host devices.
 */
export function declareSharedStack(
  host: Host,
  spec: ContextSpec,
  own: Declarer,
  policy: () => SocketPolicy,
): void {
  const cgroup = spec.cgroup;
  if (cgroup)
    own.own("cgroup", cgroup, {
      check: () => {
        const want = policy();
        let drift: string | undefined;
        try {
          // Compared with the programs as attachCounted makes them (the device programs' tags include the counting).
          const counters = knownDropCounters(host);
          drift = policyDrift(cgroup, counters === undefined ? want : { ...want, dropCounters: counters });
        } catch (err) {
          drift = `its programs cannot be compared (${errorLine(err)})`;
        }
        if (!drift) return undefined;
        return {
          action: "reattach",
          object: `bpf ${cgroup}`,
          reason: drift,
          run: () => attachCounted(host, cgroup, want),
        };
      },
    });
  for (const att of spec.attachments)
    for (const cidr of att.addresses)
      own.own("address", addressId(cidr, att.ifname), {
        on: att.ifname,
        make: {
          action: "add",
          object: `address ${cidr} dev ${att.ifname}`,
          reason: "its network or lease needs it",
          run: () => addHostAddresses(host, att.ifname, [cidr]),
        },
      });
}
