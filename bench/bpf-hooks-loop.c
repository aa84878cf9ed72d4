/*
 * The timed loop of bench/bpf-hooks.ts: ns per socket()+bind()+close() and per socket()+connect()+close() (UDP),
 * with and without the programs.
 *
 * This VM's speed drifts by up to 1.5x within a second (a fixed CPU loop, 50 ms windows), while the hooks add about
 * 0.2 us to a call of ~7 us. So the cases are measured as close together in time as possible: one process per case,
 * each inside its case's cgroup for good (moving a process between cgroups costs milliseconds), all pinned to the
 * same CPU, taking turns by passing a token through pipes. A cycle gives every case one short batch of each
 * operation, in forward order on even cycles and backward on odd ones; the caller compares the cases cycle by cycle.
 * C rather than node: a call through koffi adds ~3 us of its own jitter.
 *
 * usage: bpf-hooks-loop CYCLES CALLS CPU PEER_IPV4 NAME=CGROUP...
 * Prints one line per cycle and case: "CYCLE NAME BIND_NS CONNECT_NS" (mean ns per call over the batch).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CASES 8
/* Calls before each timed batch: the first calls after a switch of process run on caches the other case left. */
#define WARMUP 10

static struct sockaddr_in wildcard;
static struct sockaddr_in peer;

static void die(const char *what) {
  fprintf(stderr, "bpf-hooks-loop: %s: %s\n", what, strerror(errno));
  exit(1);
}

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* Sockets belong to the cgroup of the process that creates them. */
static void enter(const char *cgroup) {
  char path[4096];
  snprintf(path, sizeof path, "%s/cgroup.procs", cgroup);
  int fd = open(path, O_WRONLY);
  if (fd < 0 || dprintf(fd, "%d\n", getpid()) < 0) die(path);
  close(fd);
}

static void bind_close(void) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) die("socket");
  if (bind(fd, (struct sockaddr *)&wildcard, sizeof wildcard) < 0) die("bind");
  close(fd);
}

static void connect_close(void) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) die("socket");
  if (connect(fd, (struct sockaddr *)&peer, sizeof peer) < 0) die("connect");
  close(fd);
}

/* Mean ns per call over one batch. */
static double batch(void (*op)(void), int calls) {
  for (int i = 0; i < WARMUP; i++) op();
  double t0 = now_ns();
  for (int i = 0; i < calls; i++) op();
  return (now_ns() - t0) / calls;
}

static void await_token(int fd) {
  char c;
  if (read(fd, &c, 1) != 1) die("read token");
}

/* The parent's wait: a case process that failed leaves the others blocked, so give up after a while. */
static int await_done(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  char c;
  return poll(&p, 1, 30000) == 1 && read(fd, &c, 1) == 1;
}

static void pass_token(int fd) {
  if (write(fd, "t", 1) != 1) die("write token");
}

int main(int argc, char **argv) {
  if (argc < 6 || argc - 5 > MAX_CASES) {
    fprintf(stderr, "usage: %s CYCLES CALLS CPU PEER_IPV4 NAME=CGROUP...\n", argv[0]);
    return 2;
  }
  int cycles = atoi(argv[1]), calls = atoi(argv[2]), cpu = atoi(argv[3]);
  wildcard.sin_family = AF_INET; /* 0.0.0.0, port 0 */
  peer.sin_family = AF_INET;
  peer.sin_port = htons(9);
  if (inet_pton(AF_INET, argv[4], &peer.sin_addr) != 1) {
    fprintf(stderr, "bpf-hooks-loop: bad IPv4 address %s\n", argv[4]);
    return 2;
  }
  int cases = argc - 5;
  const char *name[MAX_CASES], *cgroup[MAX_CASES];
  for (int c = 0; c < cases; c++) {
    char *eq = strchr(argv[5 + c], '=');
    if (!eq) {
      fprintf(stderr, "bpf-hooks-loop: %s is not NAME=CGROUP\n", argv[5 + c]);
      return 2;
    }
    *eq = 0;
    name[c] = argv[5 + c];
    cgroup[c] = eq + 1;
  }
  /* results[(cycle * cases + c) * 2 + op], written by the case's process, read by this one after all exit. */
  size_t size = sizeof(double) * (size_t)cycles * (size_t)cases * 2;
  double *results = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (results == MAP_FAILED) die("mmap");
  /* turn[c]: case c may run its batch; done: a case has run its batch. */
  int turn[MAX_CASES][2], done[2];
  signal(SIGPIPE, SIG_IGN);
  for (int c = 0; c < cases; c++)
    if (pipe(turn[c]) < 0) die("pipe");
  if (pipe(done) < 0) die("pipe");
  pid_t pids[MAX_CASES];
  for (int c = 0; c < cases; c++) {
    pids[c] = fork();
    if (pids[c] < 0) die("fork");
    if (pids[c] == 0) {
      /* Only the parent writes turns and reads done, so a parent that goes away ends every case (EOF). */
      for (int k = 0; k < cases; k++) close(turn[k][1]);
      close(done[0]);
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      if (sched_setaffinity(0, sizeof set, &set) < 0) die("sched_setaffinity");
      enter(cgroup[c]);
      for (int cycle = 0; cycle < cycles; cycle++) {
        await_token(turn[c][0]);
        double *slot = &results[((size_t)cycle * cases + c) * 2];
        slot[0] = batch(bind_close, calls);
        slot[1] = batch(connect_close, calls);
        pass_token(done[1]);
      }
      _exit(0);
    }
  }
  for (int c = 0; c < cases; c++) close(turn[c][0]);
  close(done[1]);
  int failed = 0;
  for (int cycle = 0; cycle < cycles && !failed; cycle++)
    for (int k = 0; k < cases && !failed; k++) {
      pass_token(turn[cycle % 2 ? cases - 1 - k : k][1]);
      failed = !await_done(done[0]);
    }
  if (failed)
    for (int c = 0; c < cases; c++) kill(pids[c], SIGKILL);
  for (int c = 0; c < cases; c++) {
    int status;
    if (waitpid(pids[c], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
  }
  if (failed) return 1;
  for (int cycle = 0; cycle < cycles; cycle++)
    for (int c = 0; c < cases; c++) {
      double *slot = &results[((size_t)cycle * cases + c) * 2];
      printf("%d %s %.1f %.1f\n", cycle, name[c], slot[0], slot[1]);
    }
  return 0;
}
