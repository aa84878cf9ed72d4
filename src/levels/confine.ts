/**
 * argv that runs a command confined to a shared-stack context's cgroup, so that the BPF socket policy on
 * that cgroup is inescapable even for root:
 * - the shell writes its own pid to the context's cgroup.procs before exec'ing anything, so every socket
 *   the command ever makes is created inside the cgroup (sockets belong to the cgroup they were made in);
 * - a new cgroup namespace (the context's cgroup becomes "/", moving out needs write access above the
 *   namespace root) and a new mount namespace where every cgroup2 mount is read-only (root could otherwise
 *   write its pid to a parent's cgroup.procs);
 * - CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN, CAP_BPF and CAP_PERFMON leave the bounding and inheritable sets
 *   before the final exec, so root gets none of them back: no routes, no AF_PACKET sockets (the socket-creation
 *   hook does not see those), no remount, no detaching programs. CAP_SYS_PTRACE goes too: with it root opens
 *   /proc/PPID/root of the unconfined parent and finds cgroupfs writable there. CAP_SETUID and CAP_SETGID go
 *   as well: without them root could become another user, whose processes outside pass the ptrace access check
 *   (their capabilities are a subset of ours), and reach their /proc/PID/root the same way.
 */
import { cgroup2Mounts } from "../kernel/cgroup.ts";

const DROPPED = [
  "net_admin",
  "net_raw",
  "sys_admin",
  "bpf",
  "perfmon",
  "sys_ptrace",
  "sys_module",
  "setuid",
  "setgid",
];

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function confinedArgv(cgroupPath: string, command: string[]): string[] {
  const drop = DROPPED.map((c) => `-${c}`).join(",");
  const mounts = cgroup2Mounts();
  const inner = [
    "set -e",
    // Remounting the existing mounts read-only closes them; the fresh read-only mount on top shows only
    // the namespace's own subtree instead of every other context's cgroup name.
    ...mounts.map((m) => `mount -o remount,bind,ro ${shellQuote(m)}`),
    // The kernel refuses a superblock mounted on top of itself (EBUSY), so the old mount goes first; the new
    // one is mounted rw (the superblock is shared and rw) and that mount made ro. Any failure stops (set -e).
    ...mounts.map(
      (m) =>
        `umount -l ${shellQuote(m)} && mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 ${shellQuote(m)} && mount -o remount,bind,ro ${shellQuote(m)}`,
    ),
    `exec setpriv --bounding-set ${drop} --inh-caps ${drop} -- "$@"`,
  ].join("\n");
  const outer = [
    "set -e",
    'echo $$ > "$1/cgroup.procs"',
    "shift",
    `exec unshare --cgroup --mount --propagation private -- sh -c ${shellQuote(inner)} netctx-confined "$@"`,
  ].join("\n");
  return ["sh", "-c", outer, "netctx-confine", cgroupPath, ...command];
}
