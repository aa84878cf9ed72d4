/**
 * What the shared-stack levels (socket, l3) have in common: the context's addresses live on the host device of a
 * host network, and its processes live in a cgroup whose BPF programs confine their sockets to those addresses.
 */

import { pausePoint } from "../engine/pause.ts";
import { conflict, NetctxError } from "../errors.ts";
import type { Host } from "../host.ts";
import { attachSocketPolicy, detachSocketPolicy } from "../kernel/bpf/socket-policy.ts";
import { cgroupProcs, createCgroup, removeCgroup } from "../kernel/cgroup.ts";
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
  pausePoint("create:after-cgroup");
  for (const att of spec.attachments) addHostAddresses(host, att.ifname, att.addresses);
  pausePoint("create:after-addresses");
  const ipv4 = firstAddress(spec, 4);
  const ipv6 = firstAddress(spec, 6);
  attachSocketPolicy(cgroup, {
    ...(ipv4 ? { ipv4 } : {}),
    ...(ipv6 ? { ipv6 } : {}),
    ...(fwmark !== undefined ? { fwmark } : {}),
  });
}

/**
 * Refuses while processes still run in the cgroup, before anything is undone: detaching the programs first would
 * leave them running on the host's stack unconfined, and the cgroup cannot be removed under them anyway (EBUSY).
 */
export function releaseContext(host: Host, spec: ContextSpec): void {
  if (spec.cgroup) {
    const pids = cgroupProcs(spec.cgroup);
    if (pids.length > 0)
      throw conflict(
        "context",
        `processes ${pids.slice(0, 10).join(", ")}${pids.length > 10 ? ", ..." : ""} still run in it; stop them first`,
      );
    detachSocketPolicy(spec.cgroup);
    pausePoint("rm:after-bpf");
    removeCgroupSettled(spec.cgroup);
  }
  for (const att of spec.attachments)
    for (const cidr of att.addresses) tolerateMissing(() => host.rtnl.addrDel(att.ifname, cidr));
}

export function sharedStackExecArgv(record: ContextRecord, command: string[]): string[] {
  return confinedArgv(specOf(record).cgroup!, command);
}

/** A process that has just exited can keep its cgroup busy for a moment after it left cgroup.procs. */
function removeCgroupSettled(path: string): void {
  for (let attempt = 0; ; attempt++) {
    try {
      removeCgroup(path);
      return;
    } catch (err) {
      const busy =
        err instanceof NetctxError && err.message.includes("EBUSY") && cgroupProcs(path).length === 0;
      if (!busy || attempt >= 50) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
}
