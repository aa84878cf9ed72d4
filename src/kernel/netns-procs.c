/*
 * netns_pids(): the processes with a task in a network namespace, as src/kernel/netns-procs.ts's netnsProcs finds
 * them (that file says why every task counts), in C because rm runs it on every l2 context and it walks every task
 * of the host: about a microsecond a task here against five through node's fs calls. Built into
 * dist/libnetctx-procs.so and called through koffi; without a C compiler netns-procs.ts walks /proc itself.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether the namespace link at `link` reads exactly `want` ("net:[INODE]"); an exiting task reads nothing. */
static int link_is(const char *link, const char *want, size_t want_len) {
  char buf[64];
  ssize_t n = readlink(link, buf, sizeof buf);
  return n == (ssize_t)want_len && memcmp(buf, want, want_len) == 0;
}

/* Whether a thread other than the leader is in it; every thread when the leader has exited before them. */
static int other_thread_in(const char *pid, const char *want, size_t want_len, int leader_gone) {
  char path[288];
  snprintf(path, sizeof path, "/proc/%s/task", pid);
  struct stat st;
  if (stat(path, &st) != 0) return 0;
  /* The task directory's link count is 2 + its threads. */
  if (st.st_nlink <= 3 && !leader_gone) return 0;
  DIR *dir = opendir(path);
  if (!dir) return 0;
  int found = 0;
  struct dirent *e;
  while (!found && (e = readdir(dir))) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || strcmp(e->d_name, pid) == 0) continue;
    char link[560];
    snprintf(link, sizeof link, "/proc/%s/task/%s/ns/net", pid, e->d_name);
    found = link_is(link, want, want_len);
  }
  closedir(dir);
  return found;
}

/*
 * Writes up to `max` pids into `out` and returns how many there are (more than `max` when `out` was too short), or
 * -errno: -ENOENT when the namespace file is gone.
 */
int netns_pids(const char *ns_path, int *out, int max) {
  struct stat ns;
  if (stat(ns_path, &ns) != 0) return -errno;
  char want[64];
  int want_len = snprintf(want, sizeof want, "net:[%lu]", (unsigned long)ns.st_ino);
  DIR *proc = opendir("/proc");
  if (!proc) return -errno;
  int count = 0;
  struct dirent *e;
  while ((e = readdir(proc))) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    char link[288];
    snprintf(link, sizeof link, "/proc/%s/ns/net", e->d_name);
    char buf[64];
    ssize_t n = readlink(link, buf, sizeof buf);
    int leader_in = n == want_len && memcmp(buf, want, (size_t)want_len) == 0;
    if (leader_in || other_thread_in(e->d_name, want, (size_t)want_len, n < 0)) {
      if (count < max) out[count] = atoi(e->d_name);
      count++;
    }
  }
  closedir(proc);
  return count;
}
