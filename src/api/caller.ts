/**
 * The engine answers only callers outside every context. The engine's socket is hidden from `netctx exec`
 * (src/exec/netctx-enter.c covers it), so this is the second line: a process that reached the socket anyway (an
 * inherited descriptor, a path the sandbox did not know) is refused when it lives in another network or PID
 * namespace than the engine (l2 contexts; every netctx exec sandbox has a PID namespace of its own) or in a
 * context's cgroup (l3, socket).
 */
import { relative } from "node:path";
import { cgroup2Root, contextsCgroupParentPath } from "../kernel/cgroup.ts";
import { cgroupOf, namespaceOf, peerCredentials } from "../kernel/peer.ts";

export class CallerCheck {
  private readonly net = namespaceOf("self", "net");
  private readonly pid = namespaceOf("self", "pid");
  /** The contexts' cgroup parent as /proc/PID/cgroup prints paths: "/netctx". */
  private readonly contexts: string;

  /** `cgroupParent`: config.cgroupParent. */
  constructor(cgroupParent: string | undefined) {
    this.contexts = `/${relative(cgroup2Root(), contextsCgroupParentPath(cgroupParent))}`;
  }

  /** Why the peer on this connected unix socket is refused, or undefined when it may call. */
  refusal(fd: number): string | undefined {
    const { pid } = peerCredentials(fd);
    if (pid <= 0) return "the caller's process is not known (SO_PEERCRED gave no pid)";
    const net = namespaceOf(pid, "net");
    const pidNs = namespaceOf(pid, "pid");
    if (net === undefined || pidNs === undefined) return `the caller (pid ${pid}) is gone`;
    if (net !== this.net) return `the caller (pid ${pid}) runs in another network namespace (a context)`;
    if (pidNs !== this.pid)
      return `the caller (pid ${pid}) runs in another PID namespace (a context's sandbox)`;
    const cgroup = cgroupOf(pid);
    if (cgroup !== undefined && (cgroup === this.contexts || cgroup.startsWith(`${this.contexts}/`)))
      return `the caller (pid ${pid}) runs in a context's cgroup (${cgroup})`;
    return undefined;
  }
}
