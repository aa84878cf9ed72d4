/*
 * A network namespace owned by a user namespace of its own, for an l2 context (loaded by src/kernel/netns.ts through
 * koffi as dist/libnetctx-netns.so).
 *
 * Why: root inside an l2 context keeps CAP_NET_ADMIN to manage its own stack, and a capability counts in the user
 * namespace that holds it and in every one below. Held in the host's (initial) user namespace it reaches every
 * network namespace the context can name, and it can name the host's: a netlink request carrying
 * IFLA_TARGET_NETNSID (the host's nsid, which the kernel assigns as soon as the veth's peer is dumped) creates,
 * changes or deletes links there. With the context's namespace owned by a user namespace of its own, which
 * `netctx exec` joins last (src/exec/netctx-enter.c), the capability covers that namespace and no other; the engine,
 * root of the initial user namespace, keeps every right over it.
 *
 * How: node's threads rule out unshare(CLONE_NEWUSER) in its own process, so a clone() child makes both namespaces
 * at once (the new network namespace belongs to the new user namespace). It runs as a vfork child does, on node's
 * memory and file table while node's thread waits (CLONE_VM | CLONE_VFORK | CLONE_FILES: nothing is copied and no
 * scheduler wake-up is waited for), opens a handle on its network namespace into the shared table and exits. This
 * side then writes the user namespace's identity uid and gid maps (root stays root, every file keeps its owner)
 * through the exited child's /proc entry, which stays until it is reaped, and bind-mounts the handle on the path.
 * The child never lingers as a process inside the namespace (rm refuses a namespace with processes in it).
 *
 * Whose: a user namespace belongs to the euid that made it, and the kernel grants its owner every capability in it
 * from the parent namespace, whatever capabilities the owner holds (cap_capable's owner rule). Made by root, it would
 * give root of a shared-stack context, which keeps no CAP_NET_ADMIN, that capability over every l2 context's
 * namespace: the netlink requests the kernel checks against the target namespace alone (a link or address dump
 * through IFLA_TARGET_NETNSID) listed an l2 context's links from a socket or l3 context (found by the audit's
 * netlink-other-netns probe). So the creating thread takes a uid no account holds as its euid for the clone alone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define STACK_SIZE (64 * 1024)
#define IDENTITY_MAP "0 0 4294967295\n"
/* The owner of every l2 context's user namespace: no account's uid (systemd leaves 2^31 - 2 unassigned), so no host
 * process is its owner; root of a shared-stack context cannot become it (it keeps no CAP_SETUID). */
#define OWNER_UID 2147483646u

/*
 * The child, on node's memory with a stack of its own while node's thread waits: one system call, its result (a file
 * descriptor in the shared table, or -errno) left where that thread reads it.
 */
static int open_own_netns(void *arg) {
  long *netns_fd = arg;
  long fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  *netns_fd = fd < 0 ? -errno : fd;
  return 0;
}

static int write_map(pid_t pid, const char *file) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = write(fd, IDENTITY_MAP, strlen(IDENTITY_MAP)) < 0 ? errno : 0;
  close(fd);
  return err;
}

/*
 * Makes a network namespace owned by a new identity-mapped user namespace and bind-mounts it on `path` (an existing
 * file). Returns 0, or -errno: EPERM/ENOSPC from clone when user namespaces are off or exhausted
 * (user.max_user_namespaces), which the caller reports.
 */
int netns_create_owned(const char *path) {
  void *stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return -errno;
  long netns_fd = -1;
  /* The child runs on this thread's CPU, which this thread leaves as it waits: woken elsewhere, it would queue behind
   * whatever runs there (measured: ~0.3 ms a namespace pinned, ~1.1 ms not, on 2 busy cores). */
  cpu_set_t allowed, here;
  int pinned = sched_getaffinity(0, sizeof allowed, &allowed) == 0;
  if (pinned) {
    CPU_ZERO(&here);
    CPU_SET(sched_getcpu(), &here);
    pinned = sched_setaffinity(0, sizeof here, &here) == 0;
  }
  /* Blocked in the child from its first instruction: a signal handler of node's must never run on its behalf. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  /* The owner's euid on this thread alone (the raw system call: glibc's setresuid would change every thread of
   * node's), capabilities kept across it (SECBIT_NO_SETUID_FIXUP, this thread's too): a user namespace made without
   * CAP_SYS_ADMIN is refused where unprivileged ones are off (Debian's unprivileged_userns_clone, Ubuntu's AppArmor).
   * A change of euid also clears the dumpable flag of the memory node shares with the child: put back as it was. */
  int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
  int securebits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
  int err = securebits < 0 || prctl(PR_SET_SECUREBITS, securebits | SECBIT_NO_SETUID_FIXUP, 0, 0, 0) < 0 ? errno : 0;
  if (!err && syscall(SYS_setresuid, -1, OWNER_UID, -1) < 0) err = errno;
  pid_t pid = -1;
  /* No exit signal: node's SIGCHLD handling never hears of this child; waitpid(__WALL) reaps it. */
  if (!err) {
    pid = clone(open_own_netns, (char *)stack + STACK_SIZE,
                CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_NEWUSER | CLONE_NEWNET, &netns_fd);
    if (pid < 0) err = errno;
    /* Root again, or this thread would go on as nobody in particular: no way back is no way on. */
    if (syscall(SYS_setresuid, -1, 0, -1) < 0) abort();
    if (dumpable >= 0) prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
  }
  if (securebits >= 0 && prctl(PR_SET_SECUREBITS, securebits, 0, 0, 0) < 0) abort();
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (pinned) sched_setaffinity(0, sizeof allowed, &allowed);
  if (!err && netns_fd < 0) err = (int)-netns_fd;
  if (err) netns_fd = -1;
  if (!err) err = write_map(pid, "uid_map");
  if (!err) err = write_map(pid, "gid_map");
  if (!err) {
    char handle[64];
    snprintf(handle, sizeof handle, "/proc/self/fd/%ld", netns_fd);
    if (mount(handle, path, "none", MS_BIND, NULL) != 0) err = errno;
  }
  if (netns_fd >= 0) close((int)netns_fd);
  if (pid > 0)
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR) {
    }
  munmap(stack, STACK_SIZE);
  return -err;
}
