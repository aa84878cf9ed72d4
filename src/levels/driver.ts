/**
 * One interface for every level of the seed's table. The engine owns state and addresses; a level owns the
 * kernel objects that realise a context.
 */
import type { Host } from "../host.ts";
import type { Capability, SocketFamily } from "../kernel/capabilities.ts";
import type { Attachment } from "../model/attachment.ts";
import type { ContextSpec } from "../model/context-spec.ts";
import type { ContextRecord, Level, NetworkRecord } from "../model/records.ts";
import type { Declarer } from "../networks/ownership.ts";

export type { ContextSpec };

export interface LevelDriver {
  readonly level: Level;
  /** Its contexts live on the host's network stack (their addresses on a host device), not in a netns of their own. */
  readonly sharedStack: boolean;
  /** Its contexts have a routing table of their own (and may be given routes). */
  readonly ownTable: boolean;
  /** Make the context's kernel objects. On error the engine calls teardown, so partial work is undone. */
  create(host: Host, name: string, spec: ContextSpec): void;
  /** Remove them; tolerates objects that are already gone (CNI DEL semantics). */
  teardown(host: Host, name: string, spec: ContextSpec): void;
  /**
   * Attach a made context to one more network (`network connect`); undoes its own work when it fails. Absent where
   * a context's networks are fixed at create.
   */
  connect?(host: Host, name: string, spec: ContextSpec, att: Attachment): void;
  /** Take one attachment out of a made context that keeps its other networks (`network disconnect`). */
  disconnect?(host: Host, name: string, spec: ContextSpec, att: Attachment): void;
  /** Where a command runs in the context and what root keeps there (src/exec/enter.ts carries it out). */
  execSandbox(record: ContextRecord): ExecSandbox;
  /** Why a ready context cannot be working any more (its netns or cgroup is gone), or undefined. */
  anchorMissing(record: ContextRecord): string | undefined;
  /** The context's kernel objects, through its networks' drivers too, and how to make each (engine/reconcile). */
  declare(host: Host, record: ContextRecord, own: Declarer, where: ContextSurroundings): void;
}

/** What a context's declaration needs to know beyond its record. */
export interface ContextSurroundings {
  networks: ReadonlyMap<string, NetworkRecord>;
  /** The host-side link that carries its bandwidth limits, if any. */
  shapedIfname: string | undefined;
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

/** The record's spec as the store checked it on load (model/context-spec.ts): the same as `record.spec`. */
export function specOf(record: ContextRecord): ContextSpec {
  return record.spec;
}
