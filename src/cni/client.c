/*
 * The CNI plugin `netctx` as `netctx cni install DIR` writes it: this program with its configuration appended
 * (see read_config: the environment defaults chosen at install time and the fallback command line).
 *
 * The part of the CNI plugin that a container runtime execs per verb when the resident engine runs: it hands
 * the call (CNI_* environment + config on stdin) to `netctx serve` over its unix socket and prints the reply.
 * A runtime pays for this process on every ADD and DEL, and measured per call it is ~0.5 ms against ~15 ms for
 * curl and ~100 ms for node. It holds no netctx logic: whenever the engine cannot take the call (no socket,
 * nobody listening, VERSION, a value HTTP cannot carry) it execs FALLBACK (node on the bundled CNI entry)
 * with the same stdin, and that does the work in-process.
 *
 * Exit status: 0 when the engine answered 2xx, 1 otherwise (the engine's CNI error JSON is on stdout then).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Must match CNI_ENV_KEYS and cniHeaderName() in src/api/server.ts. */
static const char *const ENV_KEYS[] = {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME",
                                       "CNI_ARGS",    "CNI_PATH",        NULL};

struct buf {
	char *data;
	size_t len, cap;
};

static void put(struct buf *b, const char *s, size_t n) {
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->data = realloc(b->data, b->cap);
		if (!b->data) {
			fputs("netctx-cni-client: out of memory\n", stderr);
			exit(1);
		}
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = 0;
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

static int read_all(int fd, struct buf *b) {
	char chunk[65536];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n == 0) return 0;
		if (n < 0) {
			if (errno == EINTR) continue;
			return -1;
		}
		put(b, chunk, (size_t)n);
	}
}

static int write_all(int fd, const char *p, size_t n) {
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR) continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The fallback reads the config from stdin, which we consumed: hand it an in-memory file holding the same. */
static void exec_fallback(char **argv, const struct buf *conf) {
	int fd = memfd_create("netctx-cni-conf", 0);
	if (fd < 0 || write_all(fd, conf->data ? conf->data : "", conf->len) < 0 || lseek(fd, 0, SEEK_SET) < 0 ||
	    dup2(fd, 0) < 0) {
		perror("netctx-cni-client: preparing stdin for the fallback");
		exit(1);
	}
	close(fd);
	execv(argv[0], argv);
	fprintf(stderr, "netctx-cni-client: exec %s: %s\n", argv[0], strerror(errno));
	exit(1);
}

/* HTTP header values cannot carry control characters: such a value goes to the fallback, which reports it. */
static int header_safe(const char *v) {
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f) return 0;
	return 1;
}

static void header_name(char *out, const char *key) {
	/* CNI_CONTAINERID -> x-cni-containerid (the first underscore becomes '-', as in cniHeaderName). */
	size_t i = 0;
	out[i++] = 'x';
	out[i++] = '-';
	int dashed = 0;
	for (const char *k = key; *k; k++) {
		char c = *k;
		if (c == '_' && !dashed) {
			c = '-';
			dashed = 1;
		} else if (c >= 'A' && c <= 'Z') {
			c = (char)(c - 'A' + 'a');
		}
		out[i++] = c;
	}
	out[i] = 0;
}

/*
 * The configuration `netctx cni install` appends to its copy of this program:
 *   "env NAME=VALUE\n"   set NAME unless the runtime's environment has it
 *   "arg VALUE\n"        the fallback command line, one argument per line
 * followed by its length as 8 hex digits and the magic. No trailer: not an installed copy.
 */
#define CONFIG_MAGIC "NCXCONF1"
#define MAX_ARGS 16

static int read_config(char **fallback) {
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -1;
	char tail[17] = {0};
	off_t size = lseek(fd, 0, SEEK_END);
	if (size < 16 || pread(fd, tail, 16, size - 16) != 16 || memcmp(tail + 8, CONFIG_MAGIC, 8) != 0) {
		close(fd);
		return -1;
	}
	tail[8] = 0;
	long len = strtol(tail, NULL, 16);
	if (len <= 0 || len > size - 16) {
		close(fd);
		return -1;
	}
	char *text = malloc((size_t)len + 1);
	if (!text || pread(fd, text, (size_t)len, size - 16 - len) != len) {
		close(fd);
		return -1;
	}
	close(fd);
	text[len] = 0;
	int n = 0;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, "env ", 4) == 0) {
			char *eq = strchr(line + 4, '=');
			if (!eq) continue;
			*eq = 0;
			setenv(line + 4, eq + 1, 0);
		} else if (strncmp(line, "arg ", 4) == 0 && n < MAX_ARGS) {
			fallback[n++] = line + 4;
		}
	}
	fallback[n] = NULL;
	return n > 0 ? 0 : -1;
}

/* NETCTX_SOCKET, else netctx.sock in NETCTX_STATE_DIR, else in the default state dir (as in src/config.ts). */
static const char *socket_path(void) {
	const char *explicit_ = getenv("NETCTX_SOCKET");
	if (explicit_ && *explicit_) return explicit_;
	const char *dir = getenv("NETCTX_STATE_DIR");
	static char path[4096];
	snprintf(path, sizeof path, "%s/netctx.sock", dir && *dir ? dir : "/var/lib/netctx");
	return path;
}

static int connect_engine(const char *path) {
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof addr.sun_path) return -1;
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) return -1;
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv) {
	(void)argc;
	(void)argv;
	char *fallback[MAX_ARGS + 1];
	if (read_config(fallback) != 0) {
		fputs("netctx-cni-client: no configuration appended: install it with `netctx cni install DIR`\n", stderr);
		return 1;
	}
	const char *sock = socket_path();
	/* An engine that goes away mid-call must show as an error here, not as a silent SIGPIPE death. */
	signal(SIGPIPE, SIG_IGN);
	struct buf conf = {0};
	if (read_all(0, &conf) < 0) {
		perror("netctx-cni-client: reading the config from stdin");
		return 1;
	}
	const char *verb = getenv("CNI_COMMAND");
	if (verb && strcmp(verb, "VERSION") == 0) exec_fallback(fallback, &conf);

	struct buf req = {0};
	char len[32];
	snprintf(len, sizeof len, "%zu", conf.len);
	puts_(&req, "POST /v1/cni HTTP/1.0\r\nHost: netctx\r\nContent-Type: application/json\r\nContent-Length: ");
	puts_(&req, len);
	puts_(&req, "\r\n");
	for (const char *const *k = ENV_KEYS; *k; k++) {
		const char *v = getenv(*k);
		if (!v) continue;
		if (!header_safe(v)) exec_fallback(fallback, &conf);
		char name[64];
		header_name(name, *k);
		puts_(&req, name);
		puts_(&req, ": ");
		puts_(&req, v);
		puts_(&req, "\r\n");
	}
	puts_(&req, "\r\n");
	put(&req, conf.data ? conf.data : "", conf.len);

	int fd = connect_engine(sock);
	if (fd < 0) exec_fallback(fallback, &conf); /* no engine (or a dead one's socket): do the work here */
	struct buf resp = {0};
	if (write_all(fd, req.data, req.len) < 0 || read_all(fd, &resp) < 0) {
		/* The engine took the call and died during it: repeating it here could do it twice, so say so. */
		perror("netctx-cni-client: the engine dropped the call");
		return 1;
	}
	close(fd);
	int status = 0;
	char *body = resp.data ? strstr(resp.data, "\r\n\r\n") : NULL;
	if (!body || sscanf(resp.data, "HTTP/%*s %d", &status) != 1) {
		fputs("netctx-cni-client: the engine sent no HTTP reply\n", stderr);
		return 1;
	}
	body += 4;
	if (write_all(1, body, resp.len - (size_t)(body - resp.data)) < 0) return 1;
	return status >= 200 && status < 300 ? 0 : 1;
}
