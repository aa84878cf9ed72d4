/**
 * Many datagrams per system call on a UDP socket: recvmmsg(2) reads what is queued, sendmmsg(2) sends the replies,
 * each to the address its datagram came from. Node's dgram makes one recvmsg and one sendmsg per datagram, and a
 * Buffer, an rinfo object and a call into JavaScript for each. Under dnsperf (bench/dns.ts) that was about half of
 * the DNS worker's CPU time per answer (perf: the rest is the kernel's path of the packet); answered through here,
 * the engine's CPU time per answer went from ~10.4 us to ~5.1 us (aardvark-dns: ~9.5 us).
 *
 * Each direction's memory is one koffi allocation with stable addresses: the headers point into it (a V8 buffer may
 * move).
 * Everything here is synchronous and non-blocking (MSG_DONTWAIT): the caller reads only when its event loop says the
 * socket is readable, and a full send buffer leaves the rest to the caller.
 */
import koffi from "koffi";
import { EAGAIN, EINTR } from "./errors.ts";
import {
  bind,
  close,
  errnoName,
  inetNtop,
  inetPton,
  MSG_DONTWAIT,
  MSG_TRUNC,
  recvmmsgC,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  sendmmsgC,
  setsockopt,
  socket,
} from "./ffi.ts";

const SOCK_DGRAM = 2;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const AF_INET = 2;
const AF_INET6 = 10;

/** x86_64 and arm64 layouts: struct mmsghdr (a 56-byte msghdr and msg_len), struct iovec, sockaddr_in6. */
const MMSGHDR = 64;
const IOVEC = 16;
const NAME = 32;
const SOCKADDR_IN6 = 28;
const MSG_NAME = 0;
const MSG_NAMELEN = 8;
const MSG_IOV = 16;
const MSG_IOVLEN = 24;
const MSG_FLAGS = 48;
const MSG_LEN = 56;

/** Text of an address as Node's rinfo.address gives it (inet_ntop), remembered: senders are few and repeat. */
const MAX_NAMES = 4096;

/** flush()'s answer when the kernel took everything (the usual case): no array made for it. */
const NOTHING_LEFT: readonly { bytes: Buffer; port: number; address: string }[] = Object.freeze([]);

/**
 * A non-blocking UDP socket bound to address:port (an IPv6 one for IPv6 only), for node:dgram to take over with
 * bind({ fd }) while its owner also knows the descriptor (dgram keeps its own private). A failure throws an Error
 * whose code is the errno's name, as node:dgram's bind errors carry (EADDRNOTAVAIL, EADDRINUSE).
 */
export function openUdpSocket(address: string, port: number): number {
  const v6 = address.includes(":");
  const name = new Uint8Array(v6 ? SOCKADDR_IN6 : 16);
  const view = new DataView(name.buffer);
  view.setUint16(0, v6 ? AF_INET6 : AF_INET, true);
  view.setUint16(2, port, false);
  const failed = (what: string, errnum: number) =>
    Object.assign(new Error(`${what} ${address} port ${port}: ${errnoName(errnum)}`), {
      code: errnoName(errnum),
    });
  if (inetPton(v6 ? AF_INET6 : AF_INET, address, name.subarray(v6 ? 8 : 4)) !== 1)
    throw Object.assign(new Error(`not an address: ${address}`), { code: "EINVAL" });
  const fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw failed("socket for", koffi.errno());
  const on = new Uint8Array(4);
  new DataView(on.buffer).setInt32(0, 1, true);
  if (v6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, on, 4) !== 0) {
    const e = koffi.errno();
    close(fd);
    throw failed("IPV6_V6ONLY on", e);
  }
  if (bind(fd, name, name.length) !== 0) {
    const e = koffi.errno();
    close(fd);
    throw failed("bind", e);
  }
  return fd;
}

/** One direction's memory: `slots` headers, iovecs, addresses and data slots, with stable addresses. */
class Side {
  private readonly ptr: unknown;
  /** Where the headers start: the address of the allocation. */
  readonly base: bigint;
  readonly bytes: Buffer;
  readonly view: DataView;
  readonly iovecs: number;
  readonly names: number;
  readonly data: number;

  constructor(
    readonly slots: number,
    readonly slotSize: number,
  ) {
    this.iovecs = slots * MMSGHDR;
    this.names = this.iovecs + slots * IOVEC;
    this.data = this.names + slots * NAME;
    const size = this.data + slots * slotSize;
    this.ptr = koffi.alloc("uint8", size);
    const ab = koffi.view(this.ptr, size) as ArrayBuffer;
    this.bytes = Buffer.from(ab, 0, size);
    this.bytes.fill(0);
    this.view = new DataView(ab, 0, size);
    const base = koffi.address(this.ptr) as bigint;
    this.base = base;
    for (let i = 0; i < slots; i++) {
      const h = i * MMSGHDR;
      const iov = this.iovecs + i * IOVEC;
      this.view.setBigUint64(h + MSG_NAME, base + BigInt(this.names + i * NAME), true);
      this.view.setBigUint64(h + MSG_IOV, base + BigInt(iov), true);
      this.view.setBigUint64(h + MSG_IOVLEN, 1n, true);
      this.view.setBigUint64(iov, base + BigInt(this.data + i * slotSize), true);
      this.view.setBigUint64(iov + 8, BigInt(slotSize), true);
    }
  }

  dataOffset(i: number): number {
    return this.data + i * this.slotSize;
  }

  family(i: number): number {
    return this.view.getUint16(this.names + i * NAME, true);
  }

  port(i: number): number {
    return this.view.getUint16(this.names + i * NAME + 2, false);
  }

  /** The raw address bytes of slot i's sockaddr (4 or 16). */
  rawAddress(i: number): Buffer {
    const at = this.names + i * NAME;
    return this.family(i) === AF_INET
      ? this.bytes.subarray(at + 4, at + 8)
      : this.bytes.subarray(at + 8, at + 24);
  }

  private freed = false;

  /** Once only: a second koffi.free of the same memory would corrupt the heap (a server closed twice). */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    koffi.free(this.ptr);
  }
}

export class UdpBatch {
  private readonly rx: Side;
  private readonly tx: Side;
  /** Replies queued for the next flush. */
  private queued = 0;
  private readonly names = new Map<string, string>();
  /** The same for IPv4 senders, keyed by the address as a number: no Buffer or string made to look one up. */
  private readonly names4 = new Map<number, string>();
  /** Sockaddrs by the text node:dgram gives (queueTo): the way back from names. */
  private readonly sockaddrs = new Map<string, Uint8Array>();
  private readonly ntop = Buffer.alloc(64);
  /** How many receive slots the last recvmmsg filled: at first every one, whose msg_namelen is still 0. */
  private filled: number;

  /**
   * `slots` datagrams a call; a received datagram longer than `receiveSize` is reported truncated, a reply longer
   * than `sendSize` does not fit (queue() says so).
   */
  constructor(
    readonly slots = 64,
    readonly receiveSize = 4096,
    readonly sendSize = 2048,
  ) {
    this.rx = new Side(slots, receiveSize);
    this.filled = slots;
    this.tx = new Side(slots, sendSize);
  }

  /** The received datagrams' memory: datagram i is bytes [dataOffset(i), dataOffset(i) + length(i)). */
  get received(): Buffer {
    return this.rx.bytes;
  }

  /** Where queued replies are written: see nextReplyOffset. */
  get replies(): Buffer {
    return this.tx.bytes;
  }

  /** Reads what is queued on `fd`, up to `slots` datagrams: their count, 0 when nothing is, or a negative errno. */
  receive(fd: number): number {
    // recvmmsg wrote the sender's length into the slots it filled last time; the others still hold the full size.
    for (let i = 0; i < this.filled; i++)
      this.rx.view.setUint32(i * MMSGHDR + MSG_NAMELEN, SOCKADDR_IN6, true);
    this.filled = 0;
    for (;;) {
      const n = recvmmsgC(fd, this.rx.base, this.slots, MSG_DONTWAIT, null);
      if (n >= 0) {
        this.filled = n;
        return n;
      }
      const errno = koffi.errno();
      if (errno === EINTR) continue;
      return errno === EAGAIN ? 0 : -errno;
    }
  }

  dataOffset(i: number): number {
    return this.rx.dataOffset(i);
  }

  length(i: number): number {
    return this.rx.view.getUint32(i * MMSGHDR + MSG_LEN, true);
  }

  /** The datagram did not fit its slot: what is there is only its start. */
  truncated(i: number): boolean {
    return (this.rx.view.getInt32(i * MMSGHDR + MSG_FLAGS, true) & MSG_TRUNC) !== 0;
  }

  port(i: number): number {
    return this.rx.port(i);
  }

  /** The sender of received datagram i, as Node writes rinfo.address. */
  address(i: number): string {
    const family = this.rx.family(i);
    if (family === AF_INET) {
      const raw = this.rx.view.getUint32(this.rx.names + i * NAME + 4, false);
      const known = this.names4.get(raw);
      if (known !== undefined) return known;
      const text = this.text(family, this.rx.rawAddress(i));
      if (this.names4.size >= MAX_NAMES) this.names4.clear();
      this.names4.set(raw, text);
      return text;
    }
    return this.text(family, this.rx.rawAddress(i));
  }

  /** Where the next reply's bytes go (sendSize bytes of `replies`); undefined when the send side is full. */
  nextReplyOffset(): number | undefined {
    return this.queued < this.slots ? this.tx.dataOffset(this.queued) : undefined;
  }

  /** The reply written at nextReplyOffset(), `length` bytes, goes to the sender of received datagram `to`. */
  queueWritten(length: number, to: number): void {
    const slot = this.queued++;
    const namelen = this.rx.family(to) === AF_INET ? 16 : SOCKADDR_IN6;
    // Word by word: a Buffer.copy of so few bytes costs more in its call than in its copying.
    const from = this.rx.names + to * NAME;
    const into = this.tx.names + slot * NAME;
    for (let w = 0; w < namelen; w += 4)
      this.tx.view.setUint32(into + w, this.rx.view.getUint32(from + w, true), true);
    this.setSlot(slot, namelen, length);
  }

  /** Slot `slot` of the send side: its sockaddr's length and its data's (iov_len, 64 bits: no BigInt made). */
  private setSlot(slot: number, namelen: number, length: number): void {
    this.tx.view.setUint32(slot * MMSGHDR + MSG_NAMELEN, namelen, true);
    const iovLen = this.tx.iovecs + slot * IOVEC + 8;
    this.tx.view.setUint32(iovLen, length, true);
    this.tx.view.setUint32(iovLen + 4, 0, true);
  }

  /**
   * Queues `reply` for `address` port `port` (a datagram read another way, node:dgram's rinfo); false when it does
   * not fit, or the address is not one inet_pton reads (an IPv6 one with a scope: the caller sends it another way).
   */
  queueTo(reply: Uint8Array, port: number, address: string): boolean {
    const at = this.nextReplyOffset();
    if (at === undefined || reply.length > this.sendSize) return false;
    const sockaddr = this.sockaddrOf(address);
    if (sockaddr === undefined) return false;
    const slot = this.queued++;
    const into = this.tx.names + slot * NAME;
    this.tx.bytes.set(sockaddr, into);
    this.tx.view.setUint16(into + 2, port, false);
    this.tx.bytes.set(reply, at);
    this.setSlot(slot, sockaddr.length, reply.length);
    return true;
  }

  /** Queues `reply` for the sender of received datagram `to`; false when it does not fit (too long, or full). */
  queue(reply: Uint8Array, to: number): boolean {
    const at = this.nextReplyOffset();
    if (at === undefined || reply.length > this.sendSize) return false;
    this.tx.bytes.set(reply, at);
    this.queueWritten(reply.length, to);
    return true;
  }

  /**
   * Sends the queued replies and empties the queue: the replies the kernel did not take (a full socket buffer, or an
   * error), for the caller to send another way.
   */
  flush(fd: number): readonly { bytes: Buffer; port: number; address: string }[] {
    const count = this.queued;
    if (count === 0) return NOTHING_LEFT;
    this.queued = 0;
    let sent = 0;
    while (sent < count) {
      const n = sendmmsgC(fd, this.tx.base + BigInt(sent * MMSGHDR), count - sent, MSG_DONTWAIT);
      if (n > 0) sent += n;
      else if (n < 0 && koffi.errno() === EINTR) continue;
      else break;
    }
    const rest: { bytes: Buffer; port: number; address: string }[] = [];
    if (sent === count) return NOTHING_LEFT;
    for (let i = sent; i < count; i++) {
      const at = this.tx.dataOffset(i);
      const length = Number(this.tx.view.getBigUint64(this.tx.iovecs + i * IOVEC + 8, true));
      rest.push({
        bytes: Buffer.from(this.tx.bytes.subarray(at, at + length)),
        port: this.tx.port(i),
        address: this.text(this.tx.family(i), this.tx.rawAddress(i)),
      });
    }
    return rest;
  }

  free(): void {
    this.rx.free();
    this.tx.free();
  }

  /** The sockaddr (port 0) of an address as text; undefined when inet_pton cannot read it. */
  private sockaddrOf(address: string): Uint8Array | undefined {
    let sockaddr = this.sockaddrs.get(address);
    if (sockaddr === undefined) {
      const v6 = address.includes(":");
      sockaddr = new Uint8Array(v6 ? SOCKADDR_IN6 : 16);
      new DataView(sockaddr.buffer).setUint16(0, v6 ? AF_INET6 : AF_INET, true);
      if (inetPton(v6 ? AF_INET6 : AF_INET, address, sockaddr.subarray(v6 ? 8 : 4)) !== 1) return undefined;
      if (this.sockaddrs.size >= MAX_NAMES) this.sockaddrs.clear();
      this.sockaddrs.set(address, sockaddr);
    }
    return sockaddr;
  }

  private text(family: number, raw: Buffer): string {
    const key = raw.toString("latin1");
    let text = this.names.get(key);
    if (text === undefined) {
      text = inetNtop(family === AF_INET ? AF_INET : AF_INET6, raw, this.ntop, this.ntop.length) ?? "";
      if (this.names.size >= MAX_NAMES) this.names.clear();
      this.names.set(key, text);
    }
    return text;
  }
}
