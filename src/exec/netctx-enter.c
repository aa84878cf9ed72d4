/*
 * netctx-enter: start a command inside a context's sandbox (`netctx exec`, the audit's probes). Policy comes from
 * the command line, built by src/exec/enter.ts per level; this program only carries it out, in this order:
 *
 *   1. --cgroup DIR: move into the context's cgroup first, so every socket the command makes is born there.
 *   2. --netns PATH: enter the context's network namespace (l2), and keep a handle on the user namespace that
 *      owns it (step 6 joins it).
 *   3. new mount, PID, cgroup and IPC namespaces; fork: the child is PID 1 of the new PID namespace.
 *   4. PID 1 remakes the mounts: the host's file system read-only (systemd's ProtectSystem=strict) except /tmp
 *      and /var/tmp, which are the context's own (--tmp DIR: DIR/tmp and DIR/var-tmp, systemd's PrivateTmp), and
 *      the --rw paths (and the --ro ones, read-only: host paths the view would otherwise cover); a fresh /proc of its own PID namespace (other contexts' and the
 *      host's processes are not there to ptrace, signal or pidfd_getfd), /proc/sys and friends read-only, a fresh
 *      read-only sysfs (the context's own devices for l2) with the cgroup namespace's cgroup2 read-only on
 *      /sys/fs/cgroup (every v1 hierarchy gone), a /dev of harmless nodes only (no disks, no /dev/mem) with a
 *      /dev/shm of its own, an empty
 *      /run (the host's daemons listen there: dbus, systemd, container runtimes), nsfs/cgroup/bpf mounts elsewhere
 *      detached, --hide paths covered (the state directory and the engine's socket), a fresh mqueue for the new
 *      IPC namespace, and with --resolv-conf TEXT a read-only /etc/resolv.conf of its own.
 *   5. PID 1 forks the command and stays as its init: it reaps orphans, passes on signals sent to it, and exits
 *      with the command's status (which takes the whole PID namespace with it).
 *   6. the command's process: with --netns, into the user namespace that owns the network namespace (an l2
 *      context's own, made by src/kernel/netns-owned.c), so the capabilities kept below count in that namespace
 *      only; no_new_privs; every capability not in --keep-caps out of the bounding,
 *      inheritable, permitted, effective and ambient sets; Landlock scoping (--scope-signals,
 *      --scope-abstract-unix; ABI >= 6); a seccomp filter (no user namespaces, socket families from --families,
 *      no io_uring, bpf, mount API, setns, keyrings, module loading, TIOCSTI/TIOCLINUX); then exec.
 * Outside (the process the caller started) waits for PID 1, passes signals on and exits with its status.
 *
 * Exit status: the command's, 128+N when a signal N ended it, 125 when the sandbox could not be built, 126/127
 * when the command could not be executed (as a shell says it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/nsfs.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SETUP_FAILED 125
#define MAX_LIST 64

/* Landlock's scoping (ABI 6, kernel 6.12) is newer than the headers of Debian 12. */
struct ruleset_attr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};
#define NR_LANDLOCK_CREATE_RULESET 444
#define NR_LANDLOCK_RESTRICT_SELF 446
#define LANDLOCK_VERSION_FLAG 1
#define SCOPE_ABSTRACT_UNIX 1
#define SCOPE_SIGNAL 2

static const char *netns_path;
static const char *cgroup_dir;
static const char *resolv_text;
static const char *tmp_dir;
static const char *hide[MAX_LIST];
static int n_hide;
static const char *writable[MAX_LIST];
static int n_writable;
static const char *readable[MAX_LIST];
static int n_readable;
static int keep_caps[MAX_LIST];
static int n_keep = -1; /* -1: no --keep-caps given, which is refused */
static int families[MAX_LIST];
static int n_families = -1;
static int scope_signals;
static int scope_unix;
static char **command;
/* The user namespace owning --netns when it is not ours (the command joins it), else -1. */
static int netns_owner = -1;

static void die(const char *what) {
  fprintf(stderr, "netctx exec: sandbox: %s: %s\n", what, strerror(errno));
  _exit(SETUP_FAILED);
}

static void usage(const char *why) {
  fprintf(stderr, "netctx exec: sandbox: %s\n", why);
  _exit(SETUP_FAILED);
}

static int parse_list(const char *text, int *out) {
  int n = 0;
  const char *p = text;
  while (*p) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || v < 0 || v > 1023 || n >= MAX_LIST) usage("bad number list");
    out[n++] = (int)v;
    p = *end == ',' ? end + 1 : end;
    if (*end && *end != ',') usage("bad number list");
  }
  return n;
}

static void parse_args(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--") == 0) {
      command = &argv[i + 1];
      break;
    }
    if (strcmp(a, "--scope-signals") == 0) scope_signals = 1;
    else if (strcmp(a, "--scope-abstract-unix") == 0) scope_unix = 1;
    else if (!v) usage("option without a value");
    else if (strcmp(a, "--netns") == 0) netns_path = v, i++;
    else if (strcmp(a, "--cgroup") == 0) cgroup_dir = v, i++;
    else if (strcmp(a, "--resolv-conf") == 0) resolv_text = v, i++;
    else if (strcmp(a, "--tmp") == 0) tmp_dir = v, i++;
    else if (strcmp(a, "--hide") == 0) {
      if (n_hide >= MAX_LIST) usage("too many --hide");
      hide[n_hide++] = v, i++;
    } else if (strcmp(a, "--rw") == 0) {
      if (n_writable >= MAX_LIST) usage("too many --rw");
      writable[n_writable++] = v, i++;
    } else if (strcmp(a, "--ro") == 0) {
      if (n_readable >= MAX_LIST) usage("too many --ro");
      readable[n_readable++] = v, i++;
    } else if (strcmp(a, "--keep-caps") == 0) n_keep = parse_list(v, keep_caps), i++;
    else if (strcmp(a, "--families") == 0) n_families = parse_list(v, families), i++;
    else usage("unknown option");
  }
  if (!command || !command[0]) usage("no command after --");
  if (n_keep < 0 || n_families < 0 || !tmp_dir) usage("--keep-caps, --families and --tmp are required");
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, text, strlen(text)) < 0) die(path);
  close(fd);
}

/* ---- mounts (PID 1, inside the new mount namespace) ---- */

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void read_only_bind(const char *path) {
  if (access(path, F_OK) != 0) return;
  if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) die(path);
  if (mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
    die(path);
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s) {
  char *o = s;
  for (char *p = s; *p; p++) {
    if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] && p[3]) {
      *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
      p += 3;
    } else {
      *o++ = *p;
    }
  }
  *o = 0;
}

static int under(const char *path, const char *dir) {
  size_t n = strlen(dir);
  return strncmp(path, dir, n) == 0 && (path[n] == 0 || path[n] == '/');
}

/*
 * Handles to other namespaces (nsfs: files in /run/netns, a runtime's netns files) and to the cgroup and BPF file
 * systems can sit anywhere; the ones under /sys and /proc go with those.
 */
static void detach_handles(void) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) die("/proc/self/mountinfo");
  char line[4096];
  char *targets[512];
  int n = 0;
  while (fgets(line, sizeof line, f) && n < 512) {
    /* id parent major:minor root mountpoint options [optional...] - fstype source superoptions */
    char *save, *field, *mountpoint = NULL, *fstype = NULL;
    int i = 0, after_dash = 0;
    for (field = strtok_r(line, " ", &save); field; field = strtok_r(NULL, " ", &save), i++) {
      if (i == 4) mountpoint = field;
      else if (after_dash) {
        fstype = field;
        break;
      } else if (strcmp(field, "-") == 0 && i > 5) after_dash = 1;
    }
    if (!mountpoint || !fstype) continue;
    if (strcmp(fstype, "nsfs") && strcmp(fstype, "cgroup") && strcmp(fstype, "cgroup2") && strcmp(fstype, "bpf"))
      continue;
    unescape(mountpoint);
    if (under(mountpoint, "/sys") || under(mountpoint, "/proc")) continue;
    targets[n++] = strdup(mountpoint);
  }
  fclose(f);
  /* Deepest last in mountinfo order; detach in reverse so a parent never hides a child first. */
  for (int i = n - 1; i >= 0; i--) {
    if (umount2(targets[i], MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) die(targets[i]);
    free(targets[i]);
  }
}

static void remake_sys(void) {
  if (umount2("/sys", MNT_DETACH) < 0 && errno != EINVAL) die("umount /sys");
  /* sysfs shows the network devices of the mounting process's netns: the context's own, for l2. */
  if (mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) die("mount /sys");
  /* The cgroup namespace's root is the context's cgroup: the mount shows that subtree and nothing else. */
  /* A kernel without cgroup2 (ENODEV) or without cgroups at all (no /sys/fs/cgroup) has nothing to show. */
  if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 &&
      errno != ENODEV && errno != ENOENT)
    die("mount /sys/fs/cgroup");
}

static void remake_proc(void) {
  if (umount2("/proc", MNT_DETACH) < 0 && errno != EINVAL) die("umount /proc");
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) die("mount /proc");
  /* What container runtimes make read-only: sysctls (net.* of this netns, kernel.core_pattern, ...) and knobs. */
  static const char *const ro[] = {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs", NULL};
  for (int i = 0; ro[i]; i++) read_only_bind(ro[i]);
}

#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

/*
 * A detached copy of the mount tree at `path` (with what is mounted below it), writable, to put back later with
 * place(). Writable: a clone taken after "/" went read-only would be read-only too.
 */
static int clone_tree(const char *path) {
  int fd = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (fd < 0) die(path);
  struct mount_attr attr = {0};
  attr.attr_clr = MOUNT_ATTR_RDONLY;
  if (mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) die(path);
  return fd;
}

/* Attach a clone at `path`, made first as an empty file or directory when the path is not there. */
static void place(int fd, const char *path, int is_directory) {
  if (access(path, F_OK) != 0) {
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", path);
    for (char *p = parent + 1; (p = strchr(p, '/')); p++) {
      *p = 0;
      mkdir(parent, 0755);
      *p = '/';
    }
    if (is_directory ? mkdir(path, 0755) : close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644))) die(path);
  }
  if (move_mount(fd, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) < 0) die(path);
  close(fd);
}

static void set_read_only(const char *path, int read_only) {
  struct mount_attr attr = {0};
  if (read_only) attr.attr_set = MOUNT_ATTR_RDONLY;
  else attr.attr_clr = MOUNT_ATTR_RDONLY;
  if (mount_setattr(AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof attr) < 0) die(path);
}

/*
 * The temporary directories every program expects, writable and the context's own (systemd's PrivateTmp): the host's
 * /tmp is every host process's, and there a context would connect to a host daemon's socket (tmux, ssh-agent: a
 * connect needs no write access to the directory, and root's DAC override ignores the socket's mode), plant a file a
 * host process trusts, or read another context's files. Both are cloned before either is placed: --tmp may lie
 * under the host's /tmp, which the first covers.
 */
static void private_tmps(void) {
  static const char *const own[] = {"tmp", "var-tmp"};
  static const char *const path[] = {"/tmp", "/var/tmp"};
  int clone[2];
  for (int i = 0; i < 2; i++) {
    char source[4096];
    snprintf(source, sizeof source, "%s/%s", tmp_dir, own[i]);
    clone[i] = is_dir(path[i]) ? clone_tree(source) : -1;
  }
  for (int i = 0; i < 2; i++)
    if (clone[i] >= 0) place(clone[i], path[i], 1);
}

/* Device nodes that read or write nothing of the host's: no disks (root writes a block device whatever the
 * mount says), no /dev/mem, /dev/kmsg or /dev/port. */
static const char *const DEVICES[] = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                                      "/dev/tty",  "/dev/net/tun", NULL};

static void remake_dev(void) {
  int nodes[16], n = 0;
  for (int i = 0; DEVICES[i]; i++) nodes[n++] = access(DEVICES[i], F_OK) == 0 ? clone_tree(DEVICES[i]) : -1;
  umount2("/dev", MNT_DETACH);
  if (mount("netctx-dev", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=755,size=64k") < 0) die("mount /dev");
  for (int i = 0; DEVICES[i]; i++)
    if (nodes[i] >= 0) place(nodes[i], DEVICES[i], 0);
  /* Its own POSIX shared memory: the host's daemons keep theirs in /dev/shm, writable by root. */
  if (mkdir("/dev/shm", 01777) < 0 || mount("netctx-shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
    die("mount /dev/shm");
  /* A terminal of its own instance: the host's other terminals (/dev/pts/N) are not there to read or type into. */
  if (mkdir("/dev/pts", 0755) < 0 ||
      mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620") < 0)
    die("mount /dev/pts");
  /* The host's mqueue mount shows the host's queues; a fresh one shows the new IPC namespace's. */
  if (mkdir("/dev/mqueue", 0755) < 0 || mount("mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
    die("mount /dev/mqueue");
  static const char *const links[][2] = {{"pts/ptmx", "/dev/ptmx"},         {"/proc/self/fd", "/dev/fd"},
                                         {"/proc/self/fd/0", "/dev/stdin"}, {"/proc/self/fd/1", "/dev/stdout"},
                                         {"/proc/self/fd/2", "/dev/stderr"}};
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
    if (symlink(links[i][0], links[i][1]) < 0) die(links[i][1]);
  if (mount(NULL, "/dev", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=755,size=64k") < 0)
    die("remount /dev");
}

/*
 * /run holds the host's daemons' unix sockets (dbus, systemd, container runtimes, databases): connect() needs no
 * write access to the file system, so read-only is no cover. An empty one instead, with the resolver
 * configuration put back when /etc/resolv.conf points into /run (systemd-resolved's stub).
 */
static void remake_run(void) {
  if (!is_dir("/run")) return;
  char resolv[4096];
  int conf = -1;
  if (realpath("/etc/resolv.conf", resolv) && under(resolv, "/run")) conf = clone_tree(resolv);
  umount2("/run", MNT_DETACH);
  if (mount("netctx-run", "/run", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=1m") < 0) die("mount /run");
  if (conf >= 0) place(conf, resolv, 0);
}

/* The resolv.conf file to put in place: on a small tmpfs that is never attached anywhere (fsmount), so nothing but
 * the bind made of it reaches it; the bind is read-only. */
static int resolv_conf_file(void) {
  int fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
  if (fs < 0) die("fsopen tmpfs");
  if (fsconfig(fs, FSCONFIG_SET_STRING, "size", "16k", 0) < 0 || fsconfig(fs, FSCONFIG_SET_STRING, "mode", "0755", 0) < 0 ||
      fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
    die("tmpfs for resolv.conf");
  int mnt = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  if (mnt < 0) die("fsmount resolv.conf");
  close(fs);
  int fd = openat(mnt, "resolv.conf", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  size_t len = strlen(resolv_text);
  if (fd < 0 || write(fd, resolv_text, len) != (ssize_t)len) die("write resolv.conf");
  close(fd);
  int file = open_tree(mnt, "resolv.conf", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (file < 0) die("open_tree resolv.conf");
  close(mnt);
  struct mount_attr attr = {0};
  attr.attr_set = MOUNT_ATTR_RDONLY;
  if (mount_setattr(file, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) die("resolv.conf read-only");
  return file;
}

#define ETC_SCRATCH "/run/.netctx-etc"

/*
 * No /etc/resolv.conf at all: there is nothing to mount on, and the host's /etc must not get a file. /etc becomes an
 * overlay instead, the host's /etc below and a tmpfs above that holds only the new resolv.conf, read-only like the
 * rest. What is mounted below /etc (a runtime's /etc/hosts) is taken along and put back on top.
 */
static void etc_overlay(int file) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) die("/proc/self/mountinfo");
  char line[4096];
  char *paths[64];
  int subs[64], n = 0;
  while (fgets(line, sizeof line, f) && n < 64) {
    char *save, *field, *mountpoint = NULL;
    int i = 0;
    for (field = strtok_r(line, " ", &save); field && i <= 4; field = strtok_r(NULL, " ", &save), i++)
      if (i == 4) mountpoint = field;
    if (!mountpoint) continue;
    unescape(mountpoint);
    if (!under(mountpoint, "/etc") || strcmp(mountpoint, "/etc") == 0) continue;
    /* One under another is carried along with it (AT_RECURSIVE). */
    int inside = 0;
    for (int k = 0; k < n; k++) inside |= under(mountpoint, paths[k]);
    if (inside) continue;
    paths[n] = strdup(mountpoint);
    subs[n] = open_tree(AT_FDCWD, mountpoint, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (subs[n] < 0) die(mountpoint);
    n++;
  }
  fclose(f);
  /* Overlay takes its upper and work directories by path: a tmpfs there for as long as the mount call needs it. */
  if (mkdir(ETC_SCRATCH, 0700) < 0 || mount("netctx-etc", ETC_SCRATCH, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k") < 0 ||
      mkdir(ETC_SCRATCH "/upper", 0755) < 0 || mkdir(ETC_SCRATCH "/work", 0755) < 0)
    die(ETC_SCRATCH);
  if (mount("netctx-etc", "/etc", "overlay", MS_NOSUID | MS_NODEV,
            "lowerdir=/etc,upperdir=" ETC_SCRATCH "/upper,workdir=" ETC_SCRATCH "/work") < 0)
    die("overlay on /etc");
  if (umount2(ETC_SCRATCH, MNT_DETACH) < 0 || rmdir(ETC_SCRATCH) < 0) die(ETC_SCRATCH);
  int fd = open("/etc/resolv.conf", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) die("/etc/resolv.conf on the overlay");
  close(fd);
  if (move_mount(file, "", AT_FDCWD, "/etc/resolv.conf", MOVE_MOUNT_F_EMPTY_PATH) < 0) die("/etc/resolv.conf");
  for (int k = 0; k < n; k++) {
    if (move_mount(subs[k], "", AT_FDCWD, paths[k], MOVE_MOUNT_F_EMPTY_PATH) < 0) die(paths[k]);
    close(subs[k]);
    free(paths[k]);
  }
  struct mount_attr attr = {0};
  attr.attr_set = MOUNT_ATTR_RDONLY;
  if (mount_setattr(AT_FDCWD, "/etc", 0, &attr, sizeof attr) < 0) die("/etc read-only");
}

/* Whether a --rw path holds `path`: then it is the host's, writable, and nothing is to be laid over it. */
static int writable_path(const char *path) {
  for (int i = 0; i < n_writable; i++)
    if (under(path, writable[i]) || strcmp(writable[i], "/") == 0) return 1;
  return 0;
}

/*
 * --resolv-conf TEXT: the context's own resolver configuration (its networks' DNS server) over /etc/resolv.conf, as
 * `ip netns exec` puts /etc/netns/NAME/resolv.conf there. Whatever the host has there, the context gets its file and
 * the host's stays as it is (every mount here lives in this mount namespace):
 *  - a file, or a symlink to one (systemd-resolved's stub in /run, put back by remake_run): the file is covered where
 *    the link leads, so reading either path gives the context's file;
 *  - a symlink to nothing (a resolver not running yet, a stub of a /run not kept here): the link itself is covered
 *    (a mount may sit on a symlink); its target stays missing;
 *  - nothing: /etc becomes an overlay holding the file (etc_overlay), unless a --rw path makes /etc the host's.
 */
static void cover_resolv_conf(void) {
  if (!resolv_text) return;
  struct stat st;
  int exists = stat("/etc/resolv.conf", &st) == 0;
  int link = !exists && lstat("/etc/resolv.conf", &st) == 0;
  if (!exists && !link && (writable_path("/etc") || !is_dir("/etc"))) {
    fprintf(stderr, "netctx exec: warning: no /etc/resolv.conf to cover and /etc is the host's (--rw): the context's DNS server is not configured\n");
    return;
  }
  int file = resolv_conf_file();
  if (exists) {
    if (move_mount(file, "", AT_FDCWD, "/etc/resolv.conf", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS) < 0)
      die("/etc/resolv.conf");
  } else if (link) {
    if (move_mount(file, "", AT_FDCWD, "/etc/resolv.conf", MOVE_MOUNT_F_EMPTY_PATH) < 0) die("/etc/resolv.conf (a symlink)");
  } else {
    etc_overlay(file);
  }
  close(file);
}

static void hide_paths(void) {
  for (int i = 0; i < n_hide; i++) {
    struct stat st;
    if (lstat(hide[i], &st) < 0) continue;
    if (S_ISDIR(st.st_mode)) {
      if (mount("netctx-hidden", hide[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=000,size=4k") <
          0)
        die(hide[i]);
    } else if (!S_ISLNK(st.st_mode)) {
      /* A socket file: /dev/null on top answers ECONNREFUSED to connect(). */
      if (mount("/dev/null", hide[i], NULL, MS_BIND, NULL) < 0) die(hide[i]);
    }
  }
}

/* ---- the command's process ---- */

static int kept(int cap) {
  for (int i = 0; i < n_keep; i++)
    if (keep_caps[i] == cap) return 1;
  return 0;
}

static void drop_capabilities(void) {
  int last = CAP_LAST_CAP;
  FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
  if (f) {
    if (fscanf(f, "%d", &last) != 1) last = CAP_LAST_CAP;
    fclose(f);
  }
  for (int cap = 0; cap <= last; cap++)
    if (!kept(cap) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) die("PR_CAPBSET_DROP");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) die("PR_CAP_AMBIENT");
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  for (int i = 0; i < n_keep; i++) {
    int c = keep_caps[i];
    if (c > last) continue;
    data[c / 32].effective |= 1u << (c % 32);
    data[c / 32].permitted |= 1u << (c % 32);
    /* root's execve gives back inheritable | bounding: both now hold only what is kept. */
    data[c / 32].inheritable |= 1u << (c % 32);
  }
  if (syscall(SYS_capset, &hdr, data) < 0) die("capset");
}

static void landlock_scope(void) {
  uint64_t scoped = (scope_signals ? SCOPE_SIGNAL : 0) | (scope_unix ? SCOPE_ABSTRACT_UNIX : 0);
  if (!scoped) return;
  long abi = syscall(NR_LANDLOCK_CREATE_RULESET, NULL, 0, LANDLOCK_VERSION_FLAG);
  if (abi < 6) {
    /* The audit measures what this leaves open and reports the promise as not held. */
    fprintf(stderr, "netctx exec: warning: Landlock scoping is not available (%s): %s%s%s stay reachable\n",
            abi < 0 ? strerror(errno) : "ABI < 6", scope_unix ? "abstract unix sockets" : "",
            scope_unix && scope_signals ? " and " : "", scope_signals ? "signals" : "");
    return;
  }
  struct ruleset_attr attr = {0, 0, scoped};
  int fd = (int)syscall(NR_LANDLOCK_CREATE_RULESET, &attr, sizeof attr, 0);
  if (fd < 0) die("landlock_create_ruleset");
  if (syscall(NR_LANDLOCK_RESTRICT_SELF, fd, 0) < 0) die("landlock_restrict_self");
  close(fd);
}

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#define X32_BIT 0x40000000u
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#else
#error "netctx-enter: seccomp filter written for x86_64 and aarch64"
#endif

#define ARG_LO(n) (offsetof(struct seccomp_data, args) + 8 * (n))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define ERRNO(e) (SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))
#define LOAD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))

#ifndef __NR_clone3
#define __NR_clone3 435
#endif
#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif
/* The same number on every architecture (the unified table), newer than some headers. */
#define NR_OPENAT2 437
#define NR_FCHMODAT2 452

static struct sock_filter filter[256];
static int n_filter;

static void emit(struct sock_filter f) {
  if (n_filter >= 256) usage("seccomp filter too long");
  filter[n_filter++] = f;
}

/* if (nr == syscall) return errno */
static void deny(int nr, int err) {
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1));
  emit((struct sock_filter)RET(ERRNO(err)));
}

/* if (nr == syscall && (arg & mask)) return errno; the accumulator holds nr again afterwards. */
static void deny_flag(int nr, int arg, unsigned mask, int err) {
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 4));
  emit((struct sock_filter)LOAD(ARG_LO(arg)));
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, mask, 0, 1));
  emit((struct sock_filter)RET(ERRNO(err)));
  emit((struct sock_filter)LOAD(offsetof(struct seccomp_data, nr)));
}

#define CREATING (O_CREAT | 020000000) /* O_CREAT or O_TMPFILE's own bit: the mode argument is read */

/* if (nr == syscall && (flags arg & CREATING) && (mode arg & mask)) return EPERM; the mode is junk otherwise. */
static void deny_create(int nr, int flags_arg, int mode_arg, unsigned mask) {
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 6));
  emit((struct sock_filter)LOAD(ARG_LO(flags_arg)));
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CREATING, 0, 3));
  emit((struct sock_filter)LOAD(ARG_LO(mode_arg)));
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, mask, 0, 1));
  emit((struct sock_filter)RET(ERRNO(EPERM)));
  emit((struct sock_filter)LOAD(offsetof(struct seccomp_data, nr)));
}

/* ioctl's request is an unsigned int in the kernel: the low word is all it reads, so that is all we compare. */
static void deny_ioctl(unsigned request) {
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 4));
  emit((struct sock_filter)LOAD(ARG_LO(1)));
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, request, 0, 1));
  emit((struct sock_filter)RET(ERRNO(EPERM)));
  emit((struct sock_filter)LOAD(offsetof(struct seccomp_data, nr)));
}

/* socket(domain, ...) and socketpair(domain, ...): only the families this level needs. */
static void allow_families(int nr) {
  int n = n_families;
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, (unsigned)(n + 3)));
  emit((struct sock_filter)LOAD(ARG_LO(0)));
  for (int i = 0; i < n; i++)
    emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)families[i], (unsigned)(n - i), 0));
  emit((struct sock_filter)RET(ERRNO(EPERM)));
  emit((struct sock_filter)LOAD(offsetof(struct seccomp_data, nr)));
}

static void install_seccomp(void) {
  emit((struct sock_filter)LOAD(offsetof(struct seccomp_data, arch)));
  /* Another ABI (i386 through int 0x80) numbers its calls differently: none of them. */
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0));
  emit((struct sock_filter)RET(ERRNO(ENOSYS)));
  emit((struct sock_filter)LOAD(offsetof(struct seccomp_data, nr)));
#ifdef X32_BIT
  emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_BIT, 0, 1));
  emit((struct sock_filter)RET(ERRNO(ENOSYS)));
#endif
  /* A user namespace would hand root inside every capability again, over objects it creates (mounts, netns). */
  deny_flag(__NR_unshare, 0, CLONE_NEWUSER, EPERM);
  deny_flag(__NR_clone, 0, CLONE_NEWUSER, EPERM);
  /* clone3 passes its flags in memory a filter cannot read; ENOSYS makes libc fall back to clone. */
  deny(__NR_clone3, ENOSYS);
  allow_families(__NR_socket);
  allow_families(__NR_socketpair);
  /* io_uring makes sockets and does I/O without the system calls this filter sees. */
  deny(__NR_io_uring_setup, ENOSYS);
  deny(__NR_io_uring_enter, ENOSYS);
  deny(__NR_io_uring_register, ENOSYS);
  /* Already refused for want of a capability; refused here too, so a kept capability is not enough. */
  static const int denied[] = {__NR_bpf,          __NR_perf_event_open, __NR_setns,           __NR_mount,
                               __NR_umount2,      __NR_pivot_root,      __NR_open_tree,       __NR_move_mount,
                               __NR_fsopen,       __NR_fsconfig,        __NR_fsmount,         __NR_fspick,
                               __NR_mount_setattr, __NR_keyctl,         __NR_add_key,         __NR_request_key,
                               __NR_init_module,  __NR_finit_module,    __NR_delete_module,   __NR_kexec_load,
                               __NR_kexec_file_load, __NR_open_by_handle_at, __NR_userfaultfd, __NR_reboot,
                               __NR_swapon,       __NR_swapoff,         __NR_acct,            __NR_quotactl};
  for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) deny(denied[i], EPERM);
  /* No setuid or setgid file: /tmp is shared, and a setuid-root program left there makes any user on the host
   * root (systemd's RestrictSUIDSGID does the same). openat2 passes its mode in memory: ENOSYS, libc falls back. */
  const unsigned suid = S_ISUID | S_ISGID;
#ifdef __NR_chmod
  deny_flag(__NR_chmod, 1, suid, EPERM);
  deny_flag(__NR_creat, 1, suid, EPERM);
  deny_create(__NR_open, 1, 2, suid);
  deny_flag(__NR_mkdir, 1, suid, EPERM);
  deny_flag(__NR_mknod, 1, suid, EPERM);
#endif
  deny_flag(__NR_fchmod, 1, suid, EPERM);
  deny_flag(__NR_fchmodat, 2, suid, EPERM);
  deny_flag(NR_FCHMODAT2, 2, suid, EPERM);
  deny_create(__NR_openat, 2, 3, suid);
  deny_flag(__NR_mkdirat, 2, suid, EPERM);
  deny_flag(__NR_mknodat, 2, suid, EPERM);
  deny(NR_OPENAT2, ENOSYS);
  /* Typing into the terminal netctx exec was started from runs commands as the user outside (CVE-2017-5226). */
  deny_ioctl(TIOCSTI);
  deny_ioctl(TIOCLINUX);
  emit((struct sock_filter)RET(SECCOMP_RET_ALLOW));
  struct sock_fprog prog = {(unsigned short)n_filter, filter};
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0) die("seccomp");
}

static void withhold(int cap) {
  int n = 0;
  for (int i = 0; i < n_keep; i++)
    if (keep_caps[i] != cap) keep_caps[n++] = keep_caps[i];
  n_keep = n;
}

/*
 * A capability counts in the user namespace that holds it and in every one below. CAP_NET_ADMIN held in ours (the
 * host's) would reach every network namespace the command can name, the host's among them: netlink requests take a
 * target nsid (IFLA_TARGET_NETNSID), and a context's namespace has one for the host's. So the command moves into the
 * user namespace that owns the context's network namespace, where what it keeps covers that namespace alone; one
 * owned by ours (a container runtime's, or made where user namespaces are off) gets no CAP_NET_ADMIN at all.
 */
static void confine_to_netns_owner(int owner) {
  struct stat theirs, ours;
  if (fstat(owner, &theirs) < 0 || stat("/proc/self/ns/user", &ours) < 0) die("stat user namespace");
  if (theirs.st_ino == ours.st_ino && theirs.st_dev == ours.st_dev) {
    if (kept(CAP_NET_ADMIN))
      fprintf(stderr, "netctx exec: CAP_NET_ADMIN withheld: the context's network namespace belongs to the host's user "
                      "namespace (made by another runtime, or where user namespaces are off)\n");
    withhold(CAP_NET_ADMIN);
  } else if (setns(owner, CLONE_NEWUSER) < 0)
    die("setns user namespace");
  close(owner);
}

static void run_command(void) {
  if (netns_owner >= 0) confine_to_netns_owner(netns_owner);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs");
  drop_capabilities();
  landlock_scope();
  install_seccomp();
  execvp(command[0], command);
  int err = errno;
  fprintf(stderr, "netctx exec: %s: %s\n", command[0], strerror(err));
  _exit(err == ENOENT ? 127 : 126);
}

/* ---- the two waiting processes ---- */

static volatile pid_t forward_to;

/* A signal from a terminal (SI_KERNEL) reaches the whole foreground group, the command too: pass on only the
 * ones somebody sent to this process alone. */
static void forward(int sig, siginfo_t *info, void *ctx) {
  (void)ctx;
  if (forward_to > 0 && info->si_code != SI_KERNEL) kill(forward_to, sig);
}

static const int forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, 0};

/* Blocked from before the fork until the handlers stand: a signal sent in between (the command may already run and
 * say it is ready while this process waits for a CPU) stays pending instead of taking the default action, which
 * ends this process (SIGQUIT, SIGTERM...) or, for PID 1 of the new namespace, drops it. Blocked signals are never
 * ignored, not even by a namespace's init. */
static void block_forwarded(int how) {
  sigset_t set;
  sigemptyset(&set);
  for (int i = 0; forwarded[i]; i++) sigaddset(&set, forwarded[i]);
  sigprocmask(how, &set, NULL);
}

static void forward_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = forward;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; forwarded[i]; i++) sigaction(forwarded[i], &sa, NULL);
  block_forwarded(SIG_UNBLOCK);
}

/* fork with the forwarded signals blocked in the parent until forward_signals; the child starts unblocked (a mask
 * survives execve: the command must not inherit it). */
static pid_t fork_forwarding(void) {
  block_forwarded(SIG_BLOCK);
  pid_t pid = fork();
  if (pid == 0) block_forwarded(SIG_UNBLOCK);
  return pid;
}

static int status_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return SETUP_FAILED;
}

/* Wait for `child`, reaping anything else that ends meanwhile (PID 1 inherits orphans). */
static int wait_for(pid_t child) {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid == child) return status_code(status);
    if (pid < 0 && errno != EINTR) return SETUP_FAILED;
  }
}

static void init_process(void) {
  /* The outside process was killed: so is the namespace (PID 1's end kills every process in it). */
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  int kept[MAX_LIST], kept_dir[MAX_LIST], seen[MAX_LIST], seen_dir[MAX_LIST];
  for (int i = 0; i < n_writable; i++) {
    kept_dir[i] = is_dir(writable[i]);
    kept[i] = clone_tree(writable[i]);
  }
  /* --ro: host paths the view would cover (under the host's /tmp, say), kept visible and read-only. */
  for (int i = 0; i < n_readable; i++) {
    seen_dir[i] = is_dir(readable[i]);
    seen[i] = clone_tree(readable[i]);
    struct mount_attr attr = {0};
    attr.attr_set = MOUNT_ATTR_RDONLY;
    if (mount_setattr(seen[i], "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) die(readable[i]);
  }
  detach_handles();
  set_read_only("/", 1);
  private_tmps();
  remake_sys();
  remake_proc();
  remake_dev();
  remake_run();
  for (int i = 0; i < n_writable; i++) place(kept[i], writable[i], kept_dir[i]);
  for (int i = 0; i < n_readable; i++) place(seen[i], readable[i], seen_dir[i]);
  /* After the writable paths, so --rw /etc does not bring the host's resolv.conf back over it. */
  cover_resolv_conf();
  /* Last, so a writable path that holds a hidden one (--rw /var/lib) does not bring it back. */
  hide_paths();
  pid_t pid = fork_forwarding();
  if (pid < 0) die("fork");
  if (pid == 0) run_command();
  forward_to = pid;
  forward_signals();
  _exit(wait_for(pid));
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  if (cgroup_dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/cgroup.procs", cgroup_dir);
    write_file(path, "0");
  }
  if (netns_path) {
    int fd = open(netns_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(netns_path);
    if (setns(fd, CLONE_NEWNET) < 0) die("setns");
    netns_owner = ioctl(fd, NS_GET_USERNS);
    if (netns_owner < 0) die("NS_GET_USERNS");
    close(fd);
  }
  if (unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWCGROUP | CLONE_NEWIPC) < 0) die("unshare");
  /* Nothing mounted from here on may reach the host's mount namespace. */
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("mount --make-rprivate /");
  pid_t pid = fork_forwarding();
  if (pid < 0) die("fork");
  if (pid == 0) init_process();
  forward_to = pid;
  forward_signals();
  return wait_for(pid);
}
