/**
 * Socket probe run as a child process inside (or outside) a context's cgroup. argv[2] is a JSON list of
 * operations; one JSON result line is printed per operation. `wait` blocks until stdin closes, so sockets
 * stay open while the test talks to them.
 */
import { spawn } from "node:child_process";
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import net from "node:net";
import koffi from "koffi";

export type ProbeOp =
  | { op: "bind"; host: string; port?: number }
  | { op: "tcp"; host: string; port: number }
  | { op: "udp"; host: string; port: number; connect?: boolean }
  | { op: "raw"; family?: 4 | 6 }
  | { op: "ping-socket" }
  | { op: "packet" }
  | { op: "mark" }
  | { op: "listen-nobind" }
  | { op: "cgroup" }
  | { op: "child"; ops: ProbeOp[] }
  | { op: "wait" };

export interface ProbeResult {
  ok: boolean;
  code?: string;
  address?: string;
  port?: number;
  value?: string | number;
  children?: ProbeResult[];
}

const libc = koffi.load("libc.so.6");
const socketC = libc.func("int socket(int domain, int type, int protocol)") as (
  d: number,
  t: number,
  p: number,
) => number;
const listenC = libc.func("int listen(int fd, int backlog)") as (fd: number, backlog: number) => number;
const closeC = libc.func("int close(int fd)") as (fd: number) => number;
const getsockname = libc.func("int getsockname(int fd, void *addr, uint32_t *len)") as (
  fd: number,
  addr: Uint8Array,
  len: Uint32Array,
) => number;
const getsockopt = libc.func("int getsockopt(int fd, int level, int name, void *value, uint32_t *len)") as (
  fd: number,
  level: number,
  name: number,
  value: Uint32Array,
  len: Uint32Array,
) => number;

const ERRNO = new Map(Object.entries(koffi.os.errno as Record<string, number>).map(([k, v]) => [v, k]));
const fail = (): ProbeResult => ({ ok: false, code: ERRNO.get(koffi.errno()) ?? String(koffi.errno()) });
const errResult = (err: unknown): ProbeResult => ({
  ok: false,
  code: (err as NodeJS.ErrnoException).code ?? String(err),
});

function trySocket(domain: number, type: number, protocol: number): ProbeResult {
  const fd = socketC(domain, type, protocol);
  if (fd < 0) return fail();
  closeC(fd);
  return { ok: true };
}

const held: { close(): void }[] = [];

function bind(host: string, port: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", (err) => resolve(errResult(err)));
    server.listen({ host, port, ipv6Only: true }, () => {
      const a = server.address() as net.AddressInfo;
      held.push(server);
      resolve({ ok: true, address: a.address, port: a.port });
    });
  });
}

function tcp(host: string, port: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 2000 });
    s.once("connect", () => {
      const r = { ok: true, address: s.localAddress ?? "", port: s.localPort ?? 0 };
      s.end("hello\n", () => resolve(r));
    });
    s.once("timeout", () => {
      s.destroy();
      resolve({ ok: false, code: "ETIMEDOUT" });
    });
    s.once("error", (err) => resolve(errResult(err)));
  });
}

function udp(host: string, port: number, connect: boolean): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(net.isIPv6(host) ? "udp6" : "udp4");
    const done = (r: ProbeResult) => {
      s.close();
      resolve(r);
    };
    s.once("error", (err) => done(errResult(err)));
    const sent = (err: Error | null) => {
      if (err) done(errResult(err));
      else {
        const a = s.address();
        done({ ok: true, address: a.address, port: a.port });
      }
    };
    const send = () => (connect ? s.send("hello", sent) : s.send("hello", port, host, sent));
    if (connect) s.connect(port, host, send);
    else send();
  });
}

function listenNoBind(): ProbeResult {
  // AF_INET6 without IPV6_V6ONLY: listen() auto-binds to [::]:port for both families, and no bind hook runs.
  const fd = socketC(10, 1, 0);
  if (fd < 0) return fail();
  if (listenC(fd, 16) < 0) return fail();
  const addr = new Uint8Array(28);
  const len = new Uint32Array([28]);
  if (getsockname(fd, addr, len) < 0) return fail();
  held.push({ close: () => closeC(fd) });
  return { ok: true, port: (addr[2]! << 8) | addr[3]! };
}

function mark(): ProbeResult {
  const fd = socketC(2, 1, 0);
  if (fd < 0) return fail();
  const value = new Uint32Array(1);
  const len = new Uint32Array([4]);
  const r = getsockopt(fd, 1, 36, value, len); // SOL_SOCKET, SO_MARK
  closeC(fd);
  return r < 0 ? fail() : { ok: true, value: value[0]! };
}

function child(ops: ProbeOp[]): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [...process.execArgv, process.argv[1]!, JSON.stringify(ops)], {
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
        .map((l) => JSON.parse(l) as ProbeResult);
      resolve({ ok: true, children });
    });
  });
}

async function run(op: ProbeOp): Promise<ProbeResult> {
  switch (op.op) {
    case "bind":
      return bind(op.host, op.port ?? 0);
    case "tcp":
      return tcp(op.host, op.port);
    case "udp":
      return udp(op.host, op.port, op.connect ?? false);
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
    case "wait":
      await new Promise((resolve) => {
        process.stdin.on("end", resolve);
        process.stdin.resume();
      });
      return { ok: true };
  }
}

for (const op of JSON.parse(process.argv[2] ?? "[]") as ProbeOp[]) {
  process.stdout.write(`${JSON.stringify(await run(op))}\n`);
}
for (const h of held) h.close();
