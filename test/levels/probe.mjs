// Socket probe for the level tests, run by plain node (no tsx: it starts inside `netctx exec` many times).
// argv[2] is a JSON list of operations; one JSON result line is printed per operation. `wait` blocks until stdin
// closes, so listeners stay open while the test talks to them.
import dgram from "node:dgram";
import net from "node:net";
import koffi from "koffi";

const libc = koffi.load("libc.so.6");
const socketC = libc.func("int socket(int domain, int type, int protocol)");
const listenC = libc.func("int listen(int fd, int backlog)");
const closeC = libc.func("int close(int fd)");
const getsockname = libc.func("int getsockname(int fd, _Out_ uint8_t *addr, _Inout_ uint32_t *len)");
const getsockopt = libc.func(
  "int getsockopt(int fd, int level, int name, _Out_ uint32_t *value, _Inout_ uint32_t *len)",
);
const ERRNO = new Map(Object.entries(koffi.os.errno).map(([k, v]) => [v, k]));
const sysFail = () => ({ ok: false, code: ERRNO.get(koffi.errno()) ?? String(koffi.errno()) });
const errResult = (err) => ({ ok: false, code: err.code ?? String(err) });
const held = [];

function trySocket(domain, type, protocol) {
  const fd = socketC(domain, type, protocol);
  if (fd < 0) return sysFail();
  closeC(fd);
  return { ok: true };
}

function bind(host, port) {
  return new Promise((resolve) => {
    const server = net.createServer((c) => c.end(`${c.remoteAddress}\n`));
    server.once("error", (err) => resolve(errResult(err)));
    server.listen({ host, port, ipv6Only: true }, () => {
      const a = server.address();
      held.push(server);
      resolve({ ok: true, address: a.address, port: a.port });
    });
  });
}

function tcp(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 3000 });
    let data = "";
    let local = "";
    s.on("data", (d) => {
      data += d;
    });
    s.once("connect", () => {
      local = s.localAddress ?? "";
    });
    s.once("end", () => resolve({ ok: true, address: local, data: data.trim() }));
    s.once("timeout", () => {
      s.destroy();
      resolve({ ok: false, code: "ETIMEDOUT" });
    });
    s.once("error", (err) => resolve(errResult(err)));
  });
}

function udp(host, port) {
  return new Promise((resolve) => {
    const s = dgram.createSocket(net.isIPv6(host) ? "udp6" : "udp4");
    s.once("error", (err) => {
      s.close();
      resolve(errResult(err));
    });
    s.send("hello", port, host, (err) => {
      const r = err ? errResult(err) : { ok: true, address: s.address().address };
      s.close();
      resolve(r);
    });
  });
}

function listenNoBind() {
  // AF_INET6 without IPV6_V6ONLY: listen() auto-binds to [::]:port for both families and no bind hook runs.
  const fd = socketC(10, 1, 0);
  if (fd < 0) return sysFail();
  if (listenC(fd, 16) < 0) return sysFail();
  const addr = new Uint8Array(28);
  const len = [28];
  if (getsockname(fd, addr, len) < 0) return sysFail();
  held.push({ close: () => closeC(fd) });
  return { ok: true, port: (addr[2] << 8) | addr[3] };
}

function mark() {
  const fd = socketC(2, 1, 0);
  if (fd < 0) return sysFail();
  const value = [0];
  const len = [4];
  const r = getsockopt(fd, 1, 36, value, len); // SOL_SOCKET, SO_MARK
  closeC(fd);
  return r < 0 ? sysFail() : { ok: true, value: value[0] };
}

async function run(op) {
  switch (op.op) {
    case "bind":
      return bind(op.host, op.port ?? 0);
    case "tcp":
      return tcp(op.host, op.port);
    case "udp":
      return udp(op.host, op.port);
    case "raw":
      return op.family === 6 ? trySocket(10, 3, 58) : trySocket(2, 3, 1);
    case "packet":
      return trySocket(17, 3, 0x0300); // AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)
    case "listen-nobind":
      return listenNoBind();
    case "mark":
      return mark();
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
