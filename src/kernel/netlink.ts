/**
 * Netlink wire codec and socket: messages and attributes are written into one reusable buffer per socket,
 * every request carries NLM_F_ACK and waits for its ack (or NLMSG_DONE for dumps), and errors come back as
 * KernelError with errno and the kernel's extended-ack text. Host byte order is little endian (x86_64, arm64).
 */
import { invalid, NetctxError } from "../errors.ts";
import { formatIpBytes, ipBytes, parseIp as parseAddress, parseCidr as parseCidrText } from "../net/cidr.ts";
import { EAGAIN, EINTR, ENOBUFS, KernelError } from "./errors.ts";
import * as ffi from "./ffi.ts";

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_BRIDGE = 7;
const AF_NETLINK = 16;
const SOCK_RAW = 3;
export const NETLINK_ROUTE = 0;
const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const NETLINK_GET_STRICT_CHK = 12;
const SIOCGIFINDEX = 0x8933;

const NLMSG_HDRLEN = 16;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_ECHO = 0x8;
export const NLM_F_CREATE = 0x400;
// Flags on an NLMSG_ERROR / NLMSG_DONE answer.
const NLM_F_CAPPED = 0x100;
const NLM_F_ACK_TLVS = 0x200;
const NLMSGERR_ATTR_MSG = 1;

const NLA_TYPE_MASK = 0x3fff;

const align4 = (n: number): number => (n + 3) & ~3;

/** Builds one netlink message at a time into a reusable buffer. */
export class MessageWriter {
  buf: Buffer;
  private view: DataView;
  pos = 0;

  constructor(size = 16384) {
    this.buf = Buffer.alloc(size);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.byteLength);
  }

  begin(type: number, flags: number): this {
    this.pos = 0;
    this.ensure(NLMSG_HDRLEN);
    this.view.setUint32(0, 0, true);
    this.view.setUint16(4, type, true);
    this.view.setUint16(6, flags, true);
    this.view.setUint32(8, 0, true);
    this.view.setUint32(12, 0, true);
    this.pos = NLMSG_HDRLEN;
    return this;
  }

  /** Closes the message: length and sequence number; returns the length to send. */
  finish(seq: number): number {
    this.view.setUint32(0, this.pos, true);
    this.view.setUint32(8, seq, true);
    return this.pos;
  }

  u8(v: number): this {
    this.ensure(1);
    this.view.setUint8(this.pos, v);
    this.pos += 1;
    return this;
  }
  u16(v: number): this {
    this.ensure(2);
    this.view.setUint16(this.pos, v, true);
    this.pos += 2;
    return this;
  }
  u32(v: number): this {
    this.ensure(4);
    this.view.setUint32(this.pos, v >>> 0, true);
    this.pos += 4;
    return this;
  }
  i32(v: number): this {
    this.ensure(4);
    this.view.setInt32(this.pos, v, true);
    this.pos += 4;
    return this;
  }

  private pad(): void {
    const end = align4(this.pos);
    this.ensure(end - this.pos);
    while (this.pos < end) this.buf[this.pos++] = 0;
  }

  private attrHeader(type: number, payload: number): void {
    this.ensure(4 + payload + 3);
    this.view.setUint16(this.pos, 4 + payload, true);
    this.view.setUint16(this.pos + 2, type, true);
    this.pos += 4;
  }

  attrU8(type: number, v: number): this {
    this.attrHeader(type, 1);
    this.u8(v);
    this.pad();
    return this;
  }
  attrU16(type: number, v: number): this {
    this.attrHeader(type, 2);
    this.u16(v);
    this.pad();
    return this;
  }
  /** Network byte order u16 (ports). */
  attrBe16(type: number, v: number): this {
    this.attrHeader(type, 2);
    this.view.setUint16(this.pos, v, false);
    this.pos += 2;
    this.pad();
    return this;
  }
  attrU32(type: number, v: number): this {
    this.attrHeader(type, 4);
    this.u32(v);
    return this;
  }
  attrFlag(type: number): this {
    this.attrHeader(type, 0);
    return this;
  }
  attrBytes(type: number, bytes: Uint8Array): this {
    this.attrHeader(type, bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
    this.pad();
    return this;
  }
  /** NUL-terminated string, as the kernel's NLA_STRING/NLA_NUL_STRING policies accept. */
  attrStr(type: number, s: string): this {
    const n = Buffer.byteLength(s);
    this.attrHeader(type, n + 1);
    this.buf.write(s, this.pos);
    this.buf[this.pos + n] = 0;
    this.pos += n + 1;
    this.pad();
    return this;
  }
  /** Starts a nested attribute; pass the returned offset to nestEnd. */
  nestStart(type: number): number {
    const at = this.pos;
    this.attrHeader(type, 0);
    return at;
  }
  nestEnd(at: number): this {
    this.view.setUint16(at, this.pos - at, true);
    return this;
  }
}

/** Attributes of one message, indexed by type: offsets into a buffer that stays valid only while parsing. */
export class Attrs {
  constructor(
    readonly buf: Buffer,
    private readonly index: Int32Array,
  ) {}

  private at(type: number): number {
    return this.index[type * 2] ?? 0;
  }
  has(type: number): boolean {
    return this.at(type) > 0;
  }
  len(type: number): number {
    return this.index[type * 2 + 1] ?? 0;
  }
  u8(type: number): number | undefined {
    const o = this.at(type);
    return o > 0 ? this.buf.readUInt8(o) : undefined;
  }
  u16(type: number): number | undefined {
    const o = this.at(type);
    return o > 0 ? this.buf.readUInt16LE(o) : undefined;
  }
  be16(type: number): number | undefined {
    const o = this.at(type);
    return o > 0 ? this.buf.readUInt16BE(o) : undefined;
  }
  u32(type: number): number | undefined {
    const o = this.at(type);
    return o > 0 ? this.buf.readUInt32LE(o) : undefined;
  }
  str(type: number): string | undefined {
    const o = this.at(type);
    if (o <= 0) return undefined;
    let end = o + this.len(type);
    while (end > o && this.buf[end - 1] === 0) end--;
    return this.buf.toString("utf8", o, end);
  }
  ip(type: number): string | undefined {
    const o = this.at(type);
    return o > 0 ? formatIp(this.buf, o, this.len(type)) : undefined;
  }
  mac(type: number): string | undefined {
    const o = this.at(type);
    return o > 0 ? formatMac(this.buf, o, this.len(type)) : undefined;
  }
  nested(type: number, max: number): Attrs | undefined {
    const o = this.at(type);
    return o > 0 ? parseAttrs(this.buf, o, o + this.len(type), max) : undefined;
  }
  /** Payload offset, for structs carried in an attribute. */
  offset(type: number): number | undefined {
    const o = this.at(type);
    return o > 0 ? o : undefined;
  }
}

/** Indexes the attributes in buf[start, end); types above max are ignored. */
export function parseAttrs(buf: Buffer, start: number, end: number, max: number): Attrs {
  const index = new Int32Array((max + 1) * 2);
  let o = start;
  while (o + 4 <= end) {
    const len = buf.readUInt16LE(o);
    if (len < 4 || o + len > end) break;
    const type = buf.readUInt16LE(o + 2) & NLA_TYPE_MASK;
    if (type <= max) {
      index[type * 2] = o + 4;
      index[type * 2 + 1] = len - 4;
    }
    o += align4(len);
  }
  return new Attrs(buf, index);
}

/** One received message handed to a parser; the buffer is reused by the next recv. */
export interface Message {
  type: number;
  flags: number;
  buf: Buffer;
  /** Offset of the payload (the family header), just after the 16-byte nlmsghdr. */
  offset: number;
  /** Offset one past the end of this message. */
  end: number;
}

/** An AF_NETLINK socket bound to the netns current at creation; one request in flight at a time. */
export class NetlinkSocket {
  private fd: number;
  private seq: number;
  private rbuf = Buffer.alloc(64 * 1024);
  readonly writer = new MessageWriter();
  private building = false;
  private readonly ifreq = Buffer.alloc(40);

  private constructor(fd: number) {
    this.fd = fd;
    this.seq = Math.floor(Math.random() * 0x7fffffff);
  }

  /**
   * `groups`: the multicast groups (RTMGRP_* bits) whose notifications the socket receives besides its answers;
   * read them with drainNotifications, and use such a socket for nothing else.
   */
  static open(protocol = NETLINK_ROUTE, groups = 0): NetlinkSocket {
    const fd = ffi.socket(AF_NETLINK, SOCK_RAW | ffi.SOCK_CLOEXEC, protocol);
    if (fd < 0) throw new KernelError("netlink socket", ffi.errno());
    const sock = new NetlinkSocket(fd);
    try {
      for (const opt of [NETLINK_EXT_ACK, NETLINK_CAP_ACK]) sock.setFlag(opt, true, "netlink socket");
      // Dumps of thousands of objects arrive one skb at a time; bigger buffers absorb bursts of notifications.
      const size = Buffer.alloc(4);
      size.writeInt32LE(1 << 20);
      ffi.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, size, 4);
      ffi.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, size, 4);
      const sa = Buffer.alloc(12);
      sa.writeUInt16LE(AF_NETLINK, 0);
      sa.writeUInt32LE(groups, 8);
      if (ffi.bind(fd, sa, sa.length) < 0) throw new KernelError("netlink bind", ffi.errno());
    } catch (err) {
      sock.close();
      throw err;
    }
    return sock;
  }

  /**
   * ifindex of a device name in the socket's netns, or -errno. SIOCGIFINDEX on a netlink socket resolves in
   * the socket's netns (sock_do_ioctl -> dev_ioctl(sock_net)) at ~1.5 us, where RTM_GETLINK costs ~25 us.
   */
  ifindex(name: string): number {
    const ifr = this.ifreq;
    ifr.fill(0);
    ifr.write(name, 0, 15);
    if (ffi.ioctl(this.fd, SIOCGIFINDEX, ifr) < 0) return -ffi.errno();
    return ifr.readInt32LE(16);
  }

  close(): void {
    if (this.fd >= 0) ffi.close(this.fd);
    this.fd = -1;
  }

  /**
   * Builds a request (NLM_F_REQUEST | NLM_F_ACK added to flags) with build, sends it and waits for its ack;
   * replies that come before the ack go to onReply. Other requests (index lookups) must not run inside build.
   */
  ack(
    op: string,
    type: number,
    flags: number,
    build: (w: MessageWriter) => void,
    onReply?: (m: Message) => void,
  ): void {
    this.build(type, flags, build);
    this.exchange(op, onReply, false);
  }

  /** Builds and sends a dump request (NLM_F_DUMP added) and collects what parse returns until NLMSG_DONE. */
  dump<T>(
    op: string,
    type: number,
    build: (w: MessageWriter) => void,
    parse: (m: Message) => T | undefined,
  ): T[] {
    this.build(type, NLM_F_DUMP, build);
    for (let attempt = 0; ; attempt++) {
      const out: T[] = [];
      const interrupted = this.exchange(
        op,
        (m) => {
          const v = parse(m);
          if (v !== undefined) out.push(v);
        },
        attempt < 3,
      );
      if (!interrupted) return out;
      // The dump raced with changes (NLM_F_DUMP_INTR): the request is still in the writer, ask again.
      this.building = true;
    }
  }

  /**
   * A dump the kernel filters itself: with NETLINK_GET_STRICT_CHK it honours filter attributes in the request
   * (RTA_TABLE, RTA_OIF for routes) and walks only what they select, instead of every object of the namespace.
   * Strict checking also refuses header fields and attributes it does not know, so it is on for this dump only.
   */
  filteredDump<T>(
    op: string,
    type: number,
    build: (w: MessageWriter) => void,
    parse: (m: Message) => T | undefined,
  ): T[] {
    this.setFlag(NETLINK_GET_STRICT_CHK, true, op);
    try {
      return this.dump(op, type, build, parse);
    } finally {
      this.setFlag(NETLINK_GET_STRICT_CHK, false, op);
    }
  }

  private setFlag(option: number, on: boolean, op: string): void {
    const value = Buffer.alloc(4);
    value.writeInt32LE(on ? 1 : 0);
    if (ffi.setsockopt(this.fd, SOL_NETLINK, option, value, 4) < 0)
      throw new KernelError(`${op}: netlink setsockopt ${option}`, ffi.errno());
  }

  private build(type: number, flags: number, build: (w: MessageWriter) => void): void {
    if (this.building) throw new NetctxError("internal", "netlink: a request is already being built");
    if (this.fd < 0) throw new NetctxError("internal", "netlink: socket is closed");
    this.building = true;
    try {
      build(this.writer.begin(type, flags | NLM_F_REQUEST | NLM_F_ACK));
    } catch (err) {
      this.building = false;
      throw err;
    }
  }

  /** Returns true when a dump was interrupted (NLM_F_DUMP_INTR) and retry was requested. */
  private exchange(op: string, onReply: ((m: Message) => void) | undefined, retryIntr: boolean): boolean {
    if (!this.building) throw new NetctxError("internal", "netlink: no request was begun");
    this.building = false;
    this.seq = (this.seq + 1) >>> 0;
    const seq = this.seq;
    const len = this.writer.finish(seq);
    for (;;) {
      const n = ffi.send(this.fd, this.writer.buf, len, 0);
      if (n >= 0) break;
      const e = ffi.errno();
      if (e !== EINTR) throw new KernelError(op, e);
    }
    let failure: unknown;
    let interrupted = false;
    for (;;) {
      const n = this.receive(op);
      const buf = this.rbuf;
      let o = 0;
      while (o + NLMSG_HDRLEN <= n) {
        const mlen = buf.readUInt32LE(o);
        if (mlen < NLMSG_HDRLEN || o + mlen > n) break;
        const type = buf.readUInt16LE(o + 4);
        const flags = buf.readUInt16LE(o + 6);
        const mseq = buf.readUInt32LE(o + 8);
        const start = o;
        o += align4(mlen);
        // Leftovers of an earlier request that was abandoned (its parser threw) carry another seq.
        if (mseq !== seq) continue;
        if (type === NLMSG_ERROR) {
          const errno = -buf.readInt32LE(start + NLMSG_HDRLEN);
          if (errno === 0) {
            if (failure) throw failure;
            return false;
          }
          const orig = start + NLMSG_HDRLEN + 4;
          const tlvs = flags & NLM_F_CAPPED ? orig + NLMSG_HDRLEN : orig + align4(buf.readUInt32LE(orig));
          throw new KernelError(
            op,
            errno,
            flags & NLM_F_ACK_TLVS ? extackText(buf, tlvs, start + mlen) : undefined,
          );
        }
        if (type === NLMSG_DONE) {
          const errno = mlen >= NLMSG_HDRLEN + 4 ? -buf.readInt32LE(start + NLMSG_HDRLEN) : 0;
          if (errno > 0) {
            const tlvs = start + NLMSG_HDRLEN + 4;
            throw new KernelError(
              op,
              errno,
              flags & NLM_F_ACK_TLVS ? extackText(buf, tlvs, start + mlen) : undefined,
            );
          }
          if (failure) throw failure;
          return interrupted;
        }
        if (flags & NLM_F_DUMP_INTR && retryIntr) interrupted = true;
        if (onReply && !failure && !interrupted) {
          try {
            onReply({ type, flags, buf, offset: start + NLMSG_HDRLEN, end: start + mlen });
          } catch (err) {
            // Keep reading to the end of this answer so the socket stays in step, then throw.
            failure = err;
          }
        }
      }
    }
  }

  /**
   * Hands every notification queued on the socket (see open's `groups`) to onMessage without waiting for more.
   * Throws ENOBUFS when the kernel dropped some because the receive buffer was full: what was missed is unknown.
   */
  drainNotifications(op: string, onMessage: (m: Message) => void): void {
    for (;;) {
      const n = ffi.recv(this.fd, this.rbuf, this.rbuf.length, ffi.MSG_TRUNC | ffi.MSG_DONTWAIT);
      if (n < 0) {
        const e = ffi.errno();
        if (e === EAGAIN) return;
        if (e !== EINTR) throw new KernelError(op, e);
        continue;
      }
      if (n > this.rbuf.length) {
        this.rbuf = Buffer.alloc(align4(n) * 2);
        throw new KernelError(op, ENOBUFS, `netlink notification of ${n} bytes was truncated`);
      }
      const buf = this.rbuf;
      for (let o = 0; o + NLMSG_HDRLEN <= n; ) {
        const mlen = buf.readUInt32LE(o);
        if (mlen < NLMSG_HDRLEN || o + mlen > n) break;
        const type = buf.readUInt16LE(o + 4);
        const flags = buf.readUInt16LE(o + 6);
        onMessage({ type, flags, buf, offset: o + NLMSG_HDRLEN, end: o + mlen });
        o += align4(mlen);
      }
    }
  }

  private receive(op: string): number {
    for (;;) {
      const n = ffi.recv(this.fd, this.rbuf, this.rbuf.length, ffi.MSG_TRUNC);
      if (n > this.rbuf.length) {
        // ffi.MSG_TRUNC reports the real size of a datagram that did not fit: its tail is lost, so fail loudly
        // and grow the buffer for the next request.
        this.rbuf = Buffer.alloc(align4(n) * 2);
        throw new KernelError(op, ENOBUFS, `netlink answer of ${n} bytes was truncated`);
      }
      if (n >= 0) return n;
      const e = ffi.errno();
      if (e !== EINTR) throw new KernelError(op, e);
    }
  }
}

function extackText(buf: Buffer, start: number, end: number): string | undefined {
  const attrs = parseAttrs(buf, start, end, NLMSGERR_ATTR_MSG);
  const msg = attrs.str(NLMSGERR_ATTR_MSG);
  return msg === "" ? undefined : msg;
}

// ---- addresses -------------------------------------------------------------------------------------------

export interface IpBytes {
  family: 4 | 6;
  bytes: Buffer;
}

/** An address for a netlink attribute: parsed by net/cidr.ts, the one address codec (no leading zeros, no zones). */
export function parseIp(s: string, field = "address"): IpBytes {
  const ip = parseAddress(s, field);
  return { family: ip.family, bytes: Buffer.from(ipBytes(ip)) };
}

export const formatIp = formatIpBytes;

export interface Cidr extends IpBytes {
  prefix: number;
  address: string;
}

/** "10.1.0.2/24", "fd00::2/64"; a bare address means a host prefix. */
export function parseCidr(s: string, field = "cidr"): Cidr {
  const slash = s.indexOf("/");
  const address = slash < 0 ? s : s.slice(0, slash);
  if (slash < 0) {
    const ip = parseIp(address, field);
    return { ...ip, prefix: ip.family === 4 ? 32 : 128, address };
  }
  const c = parseCidrText(s, field);
  return { family: c.family, bytes: Buffer.from(ipBytes(c)), prefix: c.prefix, address };
}

export function familyNumber(f: 4 | 6): number {
  return f === 4 ? AF_INET : AF_INET6;
}

export function familyOfAf(af: number): 4 | 6 | undefined {
  return af === AF_INET ? 4 : af === AF_INET6 ? 6 : undefined;
}

export function parseMac(s: string, field = "mac"): Buffer {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(s)) throw invalid(field, `"${s}" is not a MAC address`);
  return Buffer.from(s.replaceAll(":", ""), "hex");
}

export function formatMac(buf: Uint8Array, o: number, len: number): string {
  const parts: string[] = [];
  for (let i = 0; i < len; i++) parts.push((buf[o + i] ?? 0).toString(16).padStart(2, "0"));
  return parts.join(":");
}
