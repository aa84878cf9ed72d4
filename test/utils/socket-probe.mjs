// The socket probe: what a process may do with sockets where it runs (in a context through `netctx exec`, straight
// in a cgroup, in a netns, or plainly), and the servers and clients the traffic tests talk through. Plain node, no
// tsx: it starts inside `netctx exec` and in namespaces many times a test. socket-probe.ts runs it and types it.
// argv[2] is a JSON list of operations; one JSON result line is printed per operation. `wait` blocks until stdin
// closes, so sockets and servers stay open while the test talks to them.
import { spawn } from "node:child_process";
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import net from "node:net";

/** The libc calls node has no API for, loaded on first use (koffi costs a start, and most runs never need it). */
let libcCache;
async function libc() {
  if (libcCache) return libcCache;
  const { default: koffi } = await import("koffi");
  const lib = koffi.load("libc.so.6");
  const errno = new Map(Object.entries(koffi.os.errno).map(([k, v]) => [v, k]));
  libcCache = {
    socket: lib.func("int socket(int domain, int type, int protocol)"),
    listen: lib.func("int listen(int fd, int backlog)"),
    close: lib.func("int close(int fd)"),
    getsockname: lib.func("int getsockname(int fd, void *addr, uint32_t *len)"),
    getsockopt: lib.func("int getsockopt(int fd, int level, int name, void *value, uint32_t *len)"),
    fail: () => ({ ok: false, code: errno.get(koffi.errno()) ?? String(koffi.errno()) }),
  };
  return libcCache;
}

const errResult = (err) => ({ ok: false, code: err.code ?? String(err) });
/** Answer a connection and close it; a peer that left first (a reset) is no failure of the server. */
const respond = (c, text) => c.on("error", () => {}).end(text);
const bare = (address) => address.replace(/^::ffff:/, "");
/** What the probe opened and keeps until its operations are done. */
const held = [];

async function trySocket(domain, type, protocol) {
  const c = await libc();
  const fd = c.socket(domain, type, protocol);
  if (fd < 0) return c.fail();
  c.close(fd);
  return { ok: true };
}

/** A TCP listener bound to host (v6 only on a v6 address), answering every connection with the peer's address. */
function bind(host, port) {
  return new Promise((resolve) => {
    const server = net.createServer((c) => respond(c, `${c.remoteAddress}\n`));
    server.once("error", (err) => resolve(errResult(err)));
    server.listen({ host, port, ipv6Only: true }, () => {
      const a = server.address();
      held.push(server);
      resolve({ ok: true, address: a.address, port: a.port });
    });
  });
}

/** Connect, half-close (a server that answers once its peer is done answers now), read the answer to its end. */
function tcp(host, port, timeout) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout });
    let data = "";
    let local = {};
    s.on("data", (d) => {
      data += d;
    });
    s.once("connect", () => {
      local = { address: s.localAddress ?? "", port: s.localPort ?? 0 };
      s.end();
    });
    s.once("end", () => resolve({ ok: true, ...local, data: data.trim() }));
    s.once("timeout", () => {
      s.destroy();
      resolve({ ok: false, code: "ETIMEDOUT" });
    });
    s.once("error", (err) => resolve(errResult(err)));
  });
}

/**
 * One datagram (on a connected socket when told); with `reply`, the answer within 2 s is the result's data, and the
 * address it came from (as recvfrom shows it) is `from`.
 */
function udp(host, port, connect, reply) {
  return new Promise((resolve) => {
    const s = dgram.createSocket(net.isIPv6(host) ? "udp6" : "udp4");
    let timer;
    const local = () => ({ address: s.address().address, port: s.address().port });
    const done = (r) => {
      clearTimeout(timer);
      s.close();
      resolve(r);
    };
    s.once("error", (err) => done(errResult(err)));
    // Listening before sending: an answer can come back before the send callback runs.
    if (reply)
      s.once("message", (m, r) => done({ ok: true, ...local(), data: m.toString().trim(), from: r.address }));
    const sent = (err) => {
      if (err) done(errResult(err));
      else if (!reply) done({ ok: true, ...local() });
      else timer = setTimeout(() => done({ ok: false, code: "ETIMEDOUT" }), 2000);
    };
    const send = () => (connect ? s.send("hello", sent) : s.send("hello", port, host, sent));
    // A refused connect calls back with its error, and a send on the unconnected socket would throw.
    if (connect) s.connect(port, host, (err) => (err ? done(errResult(err)) : send()));
    else send();
  });
}

/**
 * A server answering every TCP connection or UDP datagram with `answer` and the peer's address, on each of `hosts`
 * (TCP: "::", both families; UDP: a socket a family, so the answer leaves from the address the datagram came to).
 */
async function serve(proto, port, hosts, answer = "") {
  const text = (peer) => `${answer}${bare(peer)}\n`;
  const listen = (host) =>
    new Promise((resolve) => {
      let server;
      if (proto === "tcp") server = net.createServer((c) => respond(c, text(c.remoteAddress)));
      else {
        const v6 = net.isIPv6(host);
        // ipv6Only only where it applies: libuv refuses the flag on an IPv4 socket (EINVAL).
        server = dgram.createSocket({ type: v6 ? "udp6" : "udp4", ipv6Only: v6 });
        server.on("message", (_m, r) => server.send(text(r.address), r.port, r.address));
      }
      server.once("error", (err) => resolve(errResult(err)));
      const ready = () => {
        held.push(server);
        resolve({ ok: true, port: server.address().port });
      };
      if (proto === "tcp") server.listen({ host, port }, ready);
      else server.bind(port, host, ready);
    });
  const results = [];
  for (const host of hosts ?? (proto === "tcp" ? ["::"] : ["0.0.0.0", "::"]))
    results.push(await listen(host));
  return results.find((r) => !r.ok) ?? results[0];
}

/** A TCP server on host (default [::]) and port that reads everything and closes when its peer is done. */
function sink(port, host = "::") {
  return new Promise((resolve) => {
    const server = net.createServer((s) =>
      s
        .on("error", () => {})
        .on("data", () => {})
        .on("end", () => s.end()),
    );
    server.once("error", (err) => resolve(errResult(err)));
    server.listen(port, host, () => {
      held.push(server);
      resolve({ ok: true, port: server.address().port });
    });
  });
}

/** Send `bytes` over TCP; the value is the seconds until the peer closed (20 s at most). */
function send(host, port, bytes) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port }, () => {
      const t0 = process.hrtime.bigint();
      s.end(Buffer.alloc(bytes));
      s.on("close", () => {
        clearTimeout(timer);
        resolve({ ok: true, value: Number(process.hrtime.bigint() - t0) / 1e9 });
      });
    });
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ ok: false, code: "ETIMEDOUT" });
    }, 20_000);
    s.on("data", () => {});
    s.once("error", (err) => {
      clearTimeout(timer);
      resolve(errResult(err));
    });
  });
}

async function listenNoBind() {
  // AF_INET6 without IPV6_V6ONLY: listen() auto-binds to [::]:port for both families, and no bind hook runs.
  const c = await libc();
  const fd = c.socket(10, 1, 0);
  if (fd < 0) return c.fail();
  if (c.listen(fd, 16) < 0) return c.fail();
  const addr = new Uint8Array(28);
  const len = new Uint32Array([28]);
  if (c.getsockname(fd, addr, len) < 0) return c.fail();
  held.push({ close: () => c.close(fd) });
  return { ok: true, port: (addr[2] << 8) | addr[3] };
}

async function mark() {
  const c = await libc();
  const fd = c.socket(2, 1, 0);
  if (fd < 0) return c.fail();
  const value = new Uint32Array(1);
  const len = new Uint32Array([4]);
  const r = c.getsockopt(fd, 1, 36, value, len); // SOL_SOCKET, SO_MARK
  c.close(fd);
  return r < 0 ? c.fail() : { ok: true, value: value[0] };
}

/** The same probe again as a child process: whatever confines this one must confine its children. */
function child(ops) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [...process.execArgv, process.argv[1], JSON.stringify(ops)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    p.stdout.on("data", (d) => {
      out += d;
    });
    p.on("close", () => {
      const children = out
        .split("\n")
        .filter((l) => l)
        .map((l) => JSON.parse(l));
      resolve({ ok: true, children });
    });
  });
}

async function run(op) {
  switch (op.op) {
    case "bind":
      return bind(op.host, op.port ?? 0);
    case "tcp":
      return tcp(op.host, op.port, op.timeoutMs ?? 3000);
    case "udp":
      return udp(op.host, op.port, op.connect ?? false, op.reply ?? false);
    case "raw":
      return op.family === 6 ? trySocket(10, 3, 58) : trySocket(2, 3, 1);
    case "ping-socket":
      return trySocket(2, 2, 1);
    case "packet":
      return trySocket(17, 3, 0x0300); // AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)
    case "mark":
      return mark();
    case "listen-nobind":
      return listenNoBind();
    case "cgroup":
      return { ok: true, value: readFileSync("/proc/self/cgroup", "utf8") };
    case "child":
      return child(op.ops);
    case "serve":
      return serve(op.proto, op.port, op.hosts, op.answer);
    case "sink":
      return sink(op.port, op.host);
    case "send":
      return send(op.host, op.port, op.bytes);
    case "wait":
      await new Promise((resolve) => {
        process.stdin.on("end", resolve);
        process.stdin.resume();
      });
      return { ok: true };
    default:
      return { ok: false, code: `unknown op ${op.op}` };
  }
}

for (const op of JSON.parse(process.argv[2] ?? "[]"))
  process.stdout.write(`${JSON.stringify(await run(op))}\n`);
for (const h of held) h.close();
