/**
 * TCP and UDP ends in the test process itself (outside every context): listeners that record the peer address of
 * whatever reaches them, and a connect that says how it ended. The socket probe is the same from elsewhere.
 */
import dgram from "node:dgram";
import net from "node:net";

export interface Listener {
  port: number;
  /** The peer address of every connection or datagram so far. */
  peers: string[];
  close(): void;
}

/** Answers each connection with the peer's address and closes it. Peers go to `peers` when given (shared). */
export async function tcpListener(host: string, peers: string[] = []): Promise<Listener> {
  const server = net.createServer((c) => {
    peers.push(c.remoteAddress ?? "");
    // A peer that connects and leaves at once (a reset) is no failure of the listener.
    c.on("error", () => {});
    c.resume();
    c.end(`${c.remoteAddress}\n`);
  });
  await new Promise<void>((resolve) => server.listen({ host, port: 0 }, resolve));
  return { port: (server.address() as net.AddressInfo).port, peers, close: () => server.close() };
}

export async function udpListener(host: string, peers: string[] = []): Promise<Listener> {
  const s = dgram.createSocket(net.isIPv6(host) ? "udp6" : "udp4");
  s.on("message", (_m, rinfo) => peers.push(rinfo.address));
  await new Promise<void>((resolve) => s.bind(0, host, resolve));
  return { port: s.address().port, peers, close: () => s.close() };
}

/** A TCP connect from this process (from localAddress when given): "connected", "timeout" or the error's code. */
export function tcpConnect(
  host: string,
  port: number,
  timeoutMs: number,
  localAddress?: string,
): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: timeoutMs, ...(localAddress ? { localAddress } : {}) });
    s.once("connect", () => {
      s.destroy();
      resolve("connected");
    });
    s.once("timeout", () => {
      s.destroy();
      resolve("timeout");
    });
    s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
  });
}
