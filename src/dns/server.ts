/**
 * The DNS server proper: UDP and TCP port 53 on every served network's gateway addresses, answering from the name
 * tables and forwarding the rest. It runs in a worker thread of the engine (worker.ts), so kernel work on the main
 * thread never holds a query up; here it is plain code with sockets, testable in one thread too.
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from "node:dgram";
import { createServer, type Socket, type Server as TcpServer } from "node:net";
import { openUdpSocket, UdpBatch } from "../kernel/udp-batch.ts";
import { AnswerMemo } from "./answer-memo.ts";
import type { DnsUpdate } from "./feed.ts";
import { Forwarder } from "./forwarder.ts";
import { isHostSender } from "./host-listener.ts";
import { respond, type Transport, type ViewOf } from "./query.ts";
import { type Resolution, resolveName } from "./resolution.ts";
import { NameTables } from "./tables.ts";

export interface DnsServerOptions {
  domain: string;
  /** 53 but in tests that want another port. */
  port: number;
  /** The host's resolvers, read again whenever refreshUpstreams is called. */
  upstreams: () => string[];
  /**
   * Where the host's own tools ask (`serve --host-dns`): every network's names, others forwarded, and only for
   * senders on this host (a loopback source, or the listening address itself, which is the source the kernel picks
   * for a local destination), so a listener on a LAN address is no open resolver.
   */
  hostListen?: readonly { address: string; port: number }[];
  log: (line: string) => void;
}

const TCP_IDLE_MS = 10_000;
const TCP_MAX_CONNECTIONS = 512;
/** A bind that failed (the address not there yet, IPv6 still tentative) is tried again this often. */
const REBIND_MS = 1000;
/**
 * After node:dgram hands over a datagram, what else is queued on that socket is read BATCH_SLOTS at a time
 * (recvmmsg) and answered in one sendmmsg, at most DRAIN_CALLS reads before the event loop has its turn again (the
 * other sockets, TCP, the engine's messages).
 */
const BATCH_SLOTS = 64;
const DRAIN_CALLS = 4;

interface Listener {
  udp: UdpSocket;
  tcp: TcpServer;
}

export class DnsServer {
  readonly tables: NameTables;
  private readonly forwarder: Forwarder;
  private readonly listeners = new Map<string, Listener>();
  private readonly opening = new Set<string>();
  private readonly failed = new Map<string, string>();
  private rebind: NodeJS.Timeout | undefined;
  private readonly hostListeners = new Map<string, Listener>();
  private hostRebind: NodeJS.Timeout | undefined;
  private readonly gatewayView: ViewOf;
  private readonly hostView: ViewOf;
  /** UDP answers already given, per kind of listener (the views differ): see answer-memo.ts. */
  private readonly gatewayMemo = new AnswerMemo();
  private readonly hostMemo = new AnswerMemo();
  /** One for every listener: a drain runs to its end before another socket's begins. */
  private readonly batch = new UdpBatch(BATCH_SLOTS);

  constructor(private readonly opts: DnsServerOptions) {
    this.tables = new NameTables(opts.domain);
    this.forwarder = new Forwarder([]);
    this.gatewayView = (source) => this.tables.viewOf(source);
    const hostAddresses = (opts.hostListen ?? []).map((l) => l.address);
    this.hostView = (source) =>
      isHostSender(source, hostAddresses)
        ? new Set(this.tables.servedNetworks().map((n) => n.name))
        : undefined;
    this.refreshUpstreams();
    this.openHostListeners();
  }

  /** Apply the engine's changes, then listen where the served networks' gateways now are. */
  update(updates: readonly DnsUpdate[]): void {
    for (const u of updates) this.tables.apply(u);
    // Before the next query: a name that went must not be answered from a memo.
    if (updates.length > 0) {
      this.gatewayMemo.clear();
      this.hostMemo.clear();
    }
    if (updates.some((u) => u.kind === "network" || u.kind === "network-gone")) {
      this.syncListeners();
      this.refreshUpstreams();
    }
  }

  /** Our own listening addresses are never upstreams: a host whose resolv.conf names one would loop. */
  refreshUpstreams(): void {
    const own = new Set([
      ...this.tables.servedNetworks().flatMap((n) => n.listen),
      ...(this.opts.hostListen ?? []).filter((l) => l.port === 53).map((l) => l.address),
    ]);
    this.forwarder.setUpstreams(this.opts.upstreams().filter((a) => !own.has(a)));
  }

  resolve(name: string, network?: string): Resolution {
    return resolveName(this.tables, name, network);
  }

  listening(): string[] {
    return [...this.listeners.keys()];
  }

  async close(): Promise<void> {
    clearTimeout(this.rebind);
    clearTimeout(this.hostRebind);
    const all = [...this.listeners.values(), ...this.hostListeners.values()];
    this.listeners.clear();
    this.hostListeners.clear();
    await Promise.all(all.map((l) => closeListener(l)));
    this.batch.free();
  }

  private syncListeners(): void {
    const wanted = new Set(this.tables.servedNetworks().flatMap((n) => n.listen));
    for (const [address, l] of this.listeners)
      if (!wanted.has(address)) {
        this.listeners.delete(address);
        void closeListener(l);
      }
    for (const address of this.failed.keys()) if (!wanted.has(address)) this.failed.delete(address);
    for (const address of wanted)
      if (!this.listeners.has(address) && !this.opening.has(address)) void this.listen(address);
  }

  private wanted(address: string): boolean {
    return this.tables.servedNetworks().some((n) => n.listen.includes(address));
  }

  private async listen(address: string): Promise<void> {
    this.opening.add(address);
    try {
      const listener = await openListener(
        address,
        this.opts.port,
        this.handlers(this.gatewayView, this.gatewayMemo),
      );
      this.opening.delete(address);
      // The network may have gone while the sockets were being bound.
      if (!this.wanted(address)) return await closeListener(listener);
      this.listeners.set(address, listener);
      if (this.failed.delete(address)) this.opts.log(`dns: now listening on ${address}`);
    } catch (err) {
      this.opening.delete(address);
      const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      if (this.failed.get(address) !== why)
        this.opts.log(`dns: cannot listen on ${address} port ${this.opts.port}: ${why} (trying again)`);
      this.failed.set(address, why);
      this.rebind ??= setTimeout(() => {
        this.rebind = undefined;
        this.syncListeners();
      }, REBIND_MS);
    }
  }

  /**
   * Bound once at start; one that fails (the address not there yet) is tried again every REBIND_MS, as the gateways'
   * are, and logged once per reason.
   */
  private openHostListeners(): void {
    this.hostRebind = undefined;
    for (const { address, port } of this.opts.hostListen ?? []) {
      const key = `${address}|${port}`;
      if (this.hostListeners.has(key)) continue;
      openListener(address, port, this.handlers(this.hostView, this.hostMemo)).then(
        (l) => {
          this.hostListeners.set(key, l);
          if (this.failed.delete(key)) this.opts.log(`dns: host listener now on ${address} port ${port}`);
        },
        (err: NodeJS.ErrnoException) => {
          const why = err.code ?? err.message;
          if (this.failed.get(key) !== why)
            this.opts.log(
              `dns: cannot listen for the host on ${address} port ${port}: ${why} (trying again)`,
            );
          this.failed.set(key, why);
          this.hostRebind ??= setTimeout(() => this.openHostListeners(), REBIND_MS);
        },
      );
    }
  }

  private handlers(viewOf: ViewOf, memo: AnswerMemo): Handlers {
    return {
      udp: (msg, rinfo, fd, udp) => this.onDatagram(msg, rinfo, fd, udp, viewOf, memo),
      tcp: (socket) => this.onConnection(socket, viewOf),
    };
  }

  /**
   * The datagram node:dgram read: its answer is queued in the batch and goes out in the same sendmmsg as the
   * answers to what else is queued on the socket (one node:dgram send per wakeup cost more than the whole batched
   * answer of another query). An answer that comes later (forwarded), or that does not fit, goes by node:dgram.
   */
  private onDatagram(
    msg: Buffer,
    rinfo: RemoteInfo,
    fd: number,
    udp: UdpSocket,
    viewOf: ViewOf,
    memo: AnswerMemo,
  ): void {
    let inBatch = true;
    this.onQuery(
      msg,
      rinfo.address,
      "udp",
      (bytes) => {
        if (!(inBatch && this.batch.queueTo(bytes, rinfo.port, rinfo.address)))
          udp.send(bytes, rinfo.port, rinfo.address);
      },
      viewOf,
      memo,
    );
    inBatch = false;
    this.drain(fd, udp, viewOf, memo);
  }

  /** Answers what else is queued on the UDP socket `fd`, a batch a call each way, and sends what is queued. */
  private drain(fd: number, udp: UdpSocket, viewOf: ViewOf, memo: AnswerMemo): void {
    const batch = this.batch;
    for (let call = 0; call < DRAIN_CALLS; call++) {
      // A read error (none is expected on UDP but ICMP-reported ones) is left to node:dgram's next read.
      const n = batch.receive(fd);
      for (let i = 0; i < n; i++) this.onBatched(i, udp, viewOf, memo);
      for (const r of batch.flush(fd)) udp.send(r.bytes, r.port, r.address);
      if (n < batch.slots) return;
    }
  }

  /** Datagram i of the batch: from the memo straight into the batch's reply, else as any query. */
  private onBatched(i: number, udp: UdpSocket, viewOf: ViewOf, memo: AnswerMemo): void {
    const batch = this.batch;
    // Longer than any query this server takes (one question, an OPT record): what is there is only its start.
    if (batch.truncated(i)) return;
    const data = batch.received;
    const at = batch.dataOffset(i);
    const length = batch.length(i);
    const from = batch.address(i);
    const held = length >= 12 ? memo.held(from, data, at, at + length) : undefined;
    const out = batch.nextReplyOffset();
    if (held && out !== undefined && held.length <= batch.sendSize) {
      const replies = batch.replies;
      replies.set(held, out);
      // The query's own id over the first asker's.
      replies[out] = data[at]!;
      replies[out + 1] = data[at + 1]!;
      batch.queueWritten(held.length, i);
      return;
    }
    // A copy: a forwarded query is kept until its answer comes, and the batch's memory is read into again.
    const msg = Buffer.from(data.subarray(at, at + length));
    const port = batch.port(i);
    let inBatch = true;
    this.onQuery(
      msg,
      from,
      "udp",
      (bytes) => {
        if (!(inBatch && batch.queue(bytes, i))) udp.send(bytes, port, from);
      },
      viewOf,
      memo,
    );
    inBatch = false;
  }

  private onQuery(
    msg: Buffer,
    from: string,
    transport: Transport,
    reply: (bytes: Buffer) => void,
    viewOf: ViewOf,
    memo?: AnswerMemo,
  ): void {
    const hit = memo?.answer(from, msg);
    if (hit) {
      reply(hit);
      return;
    }
    let outcome: ReturnType<typeof respond>;
    try {
      outcome = respond(this.tables, msg, from, transport, viewOf);
    } catch (err) {
      // A bug of ours must not take the server down with it: the client hears nothing and retries.
      this.opts.log(`dns: query from ${from} failed: ${(err as Error).message}`);
      return;
    }
    if (outcome.kind === "drop") return;
    if (outcome.kind === "reply") {
      memo?.keep(from, msg, outcome.bytes);
      reply(outcome.bytes);
      return;
    }
    const cached = this.forwarder.cachedAnswer({ ...outcome, transport });
    if (cached) {
      memo?.keep(from, msg, cached.bytes, cached.validUntil);
      reply(cached.bytes);
      return;
    }
    this.forwarder
      .forward({ ...outcome, transport })
      .then(reply)
      .catch(() => {});
  }

  private onConnection(socket: Socket, viewOf: ViewOf): void {
    const from = socket.remoteAddress ?? "";
    socket.on("error", () => {});
    // A sender we do not serve gets its connection closed, before reading anything.
    if (!viewOf(from)) {
      socket.destroy();
      return;
    }
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    let pending: Buffer = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      while (pending.length >= 2) {
        const len = pending.readUInt16BE(0);
        if (pending.length < 2 + len) break;
        const msg = pending.subarray(2, 2 + len);
        pending = pending.subarray(2 + len);
        this.onQuery(
          Buffer.from(msg),
          from,
          "tcp",
          (bytes) => {
            if (socket.destroyed) return;
            const head = Buffer.alloc(2);
            head.writeUInt16BE(bytes.length);
            socket.write(Buffer.concat([head, bytes]));
          },
          viewOf,
        );
      }
    });
  }
}

interface Handlers {
  /** A datagram from node:dgram, on the socket `fd` it was read from. */
  udp: (msg: Buffer, rinfo: RemoteInfo, fd: number, udp: UdpSocket) => void;
  tcp: (s: Socket) => void;
}

/**
 * Every address this server sends to is an address a datagram came from: no name to look up, and node:dgram's
 * default (dns.lookup) would test it against a pattern and defer each send by a tick.
 */
const literalAddress = (
  address: string,
  _family: unknown,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
) => callback(null, address, address.includes(":") ? 6 : 4);

function openListener(address: string, port: number, on: Handlers): Promise<Listener> {
  return new Promise((resolve, reject) => {
    const v6 = address.includes(":");
    // Bound here and handed to node:dgram, so that the batch reads and sends on the same descriptor (openUdpSocket
    // keeps an IPv6 socket to its own address family, as ipv6Only did).
    let fd: number;
    try {
      fd = openUdpSocket(address, port);
    } catch (err) {
      reject(err);
      return;
    }
    const udp = createSocket({ type: v6 ? "udp6" : "udp4", lookup: literalAddress });
    udp.once("error", reject);
    udp.bind({ fd }, () => {
      udp.removeListener("error", reject);
      udp.on("error", () => {});
      udp.on("message", (msg, rinfo) => on.udp(msg, rinfo, fd, udp));
      const tcp = createServer(on.tcp);
      tcp.maxConnections = TCP_MAX_CONNECTIONS;
      tcp.once("error", (err) => {
        udp.close();
        reject(err);
      });
      tcp.listen({ host: address, port, exclusive: true, ...(v6 ? { ipv6Only: true } : {}) }, () => {
        tcp.removeAllListeners("error");
        tcp.on("error", () => {});
        resolve({ udp, tcp });
      });
    });
  });
}

function closeListener(l: Listener): Promise<void> {
  return new Promise((resolve) => {
    l.udp.close();
    l.tcp.close(() => resolve());
  });
}
