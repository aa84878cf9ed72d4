/**
 * Bytes a TCP server has received, from the kernel's socket diagnostics (NETLINK_SOCK_DIAG, tcp_info's
 * tcpi_bytes_received) in the server's network namespace. A read is an exact lookup of the test connection's
 * socket, tens of microseconds where `ss` takes milliseconds, so the data path bench can read it inside a turn.
 */
import { type Message, type MessageWriter, NetlinkSocket, parseAttrs } from "../src/kernel/netlink.ts";
import { inNetns } from "../src/kernel/netns.ts";

const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const IPPROTO_TCP = 6;
const INET_DIAG_INFO = 2;
const TCP_ESTABLISHED = 1;
/** sizeof(struct inet_diag_msg); its socket id starts at 4, with the local port first (big-endian). */
const DIAG_MSG_SIZE = 72;
const SOCKID = 4;
/** sizeof(struct inet_diag_sockid): ports, two 16-byte addresses, interface, cookie. */
const SOCKID_SIZE = 48;
/** Offset of tcpi_bytes_received (u64) in struct tcp_info. */
const TCPI_BYTES_RECEIVED = 128;

/** More than iperf3's control connection ever carries: a socket past this is the test connection. */
const STREAMING_BYTES = 1 << 20;

export class TcpReceived {
  private readonly sock: NetlinkSocket;
  private stream: Buffer | undefined;

  /** netns: path of the namespace the server lives in; undefined: this one. */
  constructor(
    netns: string | undefined,
    private readonly family: 4 | 6,
    private readonly port: number,
  ) {
    const open = () => NetlinkSocket.open(NETLINK_SOCK_DIAG);
    this.sock = netns ? inNetns(netns, open) : open();
  }

  /**
   * Looks for the test connection among the established sockets on the local port (one dump; it walks the kernel's
   * whole connection hash, milliseconds): true once one has received more than the control connection could.
   */
  findStream(): boolean {
    const found = this.sock.dump(
      "sock_diag tcp dump",
      SOCK_DIAG_BY_FAMILY,
      (w) => this.request(w, undefined),
      (m: Message) => {
        if (m.buf.readUInt16BE(m.offset + SOCKID) !== this.port) return undefined;
        const bytes = receivedOf(m);
        if (bytes === undefined || bytes <= STREAMING_BYTES) return undefined;
        return Buffer.from(m.buf.subarray(m.offset + SOCKID, m.offset + SOCKID + SOCKID_SIZE));
      },
    );
    this.stream = found[0];
    return this.stream !== undefined;
  }

  /** Bytes the test connection has received: one exact lookup by its socket id (tens of microseconds). */
  bytes(): number {
    const id = this.stream;
    if (!id) throw new Error(`no test connection found on port ${this.port}`);
    let bytes: number | undefined;
    this.sock.ack(
      "sock_diag tcp lookup",
      SOCK_DIAG_BY_FAMILY,
      0,
      (w) => this.request(w, id),
      (m) => {
        bytes = receivedOf(m);
      },
    );
    if (bytes === undefined) throw new Error(`the test connection on port ${this.port} has gone`);
    return bytes;
  }

  close(): void {
    this.sock.close();
  }

  /** struct inet_diag_req_v2: family, protocol, the extensions wanted (a bit per INET_DIAG_*), states, socket id. */
  private request(w: MessageWriter, id: Buffer | undefined): void {
    w.u8(this.family === 4 ? 2 : 10)
      .u8(IPPROTO_TCP)
      .u8(1 << (INET_DIAG_INFO - 1))
      .u8(0)
      .u32(1 << TCP_ESTABLISHED);
    for (let i = 0; i < SOCKID_SIZE; i++) w.u8(id ? id[i]! : 0);
  }
}

function receivedOf(m: Message): number | undefined {
  const attrs = parseAttrs(m.buf, m.offset + DIAG_MSG_SIZE, m.end, INET_DIAG_INFO);
  const info = attrs.offset(INET_DIAG_INFO);
  if (info === undefined || attrs.len(INET_DIAG_INFO) < TCPI_BYTES_RECEIVED + 8) return undefined;
  return Number(m.buf.readBigUInt64LE(info + TCPI_BYTES_RECEIVED));
}
