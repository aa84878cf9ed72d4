/**
 * One interface for every level of the seed's table. The engine owns state and addresses; a level owns the
 * kernel objects that realise a context.
 */
import type { Host } from "../host.ts";
import type { Capability, SocketFamily } from "../kernel/capabilities.ts";
import type { Bandwidth, Published } from "../model/publish.ts";
import type { Attachment } from "../networks/driver.ts";
import type { ContextRecord, Level } from "../state/store.ts";

/** What the engine records about a context before touching the kernel, so gc can finish or undo it. */
export interface ContextSpec {
  attachments: Attachment[];
  /** l2: path of the context's own netns. */
  netns?: string;
  /** l2: the netns belongs to somebody else (a container runtime): never delete it. */
  netnsExternal?: boolean;
  /** Owner marks from ContextInput.labels (CNI: container id, ifname, config name). */
  labels?: Record<string, string>;
  /** l3 and socket: the context's cgroup directory. */
  cgroup?: string;
  /** l3: the context's routing table. */
  table?: number;
  routes?: string[];
  /** Published ports (firewall/publish.ts). */
  publish?: Published[];
  /** l2: rate limits on the host side of the first attachment (networks/bandwidth.ts). */
  bandwidth?: Bandwidth;
}

export interface LevelDriver {
  readonly level: Level;
  /** Make the context's kernel objects. On error the engine calls teardown, so partial work is undone. */
  create(host: Host, name: string, spec: ContextSpec): void;
  /** Remove them; tolerates objects that are already gone (CNI DEL semantics). */
  teardown(host: Host, name: string, spec: ContextSpec): void;
  /** Where a command runs in the context and what root keeps there (src/exec/enter.ts carries it out). */
  execSandbox(record: ContextRecord): ExecSandbox;
}

/**
 * The sandbox of `netctx exec` for one context. Every level also gets what src/exec/netctx-enter.c does for all:
 * its own PID, mount, cgroup and IPC namespaces, read-only /proc/sys, /sys and cgroupfs, the engine's files hidden,
 * no_new_privs, no user namespaces, and Landlock signal scoping.
 */
export interface ExecSandbox {
  /** l2: the network namespace to enter. */
  netns?: string;
  /** l3, socket: the cgroup to join before anything else. */
  cgroup?: string;
  /** Capabilities root keeps; every other one leaves every set. */
  keepCaps: readonly Capability[];
  /** Socket families the context may open (seccomp: others fail with EPERM, as a refused raw socket does). */
  families: readonly SocketFamily[];
  /** Landlock: abstract unix sockets reach only this exec's processes (for shared-stack levels, whose abstract
   * namespace is the host's). */
  scopeAbstractUnix: boolean;
}

/**
 * What root keeps at every level: ownership and permission overrides on files, low ports, chroot, audit records.
 * Gone among others: kill (signals to other users' processes), sys_admin (setns, mount), sys_ptrace, dac_read_search
 * (open_by_handle_at walks out of any mount), mknod (a block device node is the raw disk), setpcap, setfcap.
 */
export const BASE_CAPABILITIES: readonly Capability[] = [
  "chown",
  "dac_override",
  "fowner",
  "fsetid",
  "net_bind_service",
  "sys_chroot",
  "audit_write",
];

export function specOf(record: ContextRecord): ContextSpec {
  return record.spec as unknown as ContextSpec;
}
