/**
 * TCP connections of a network namespace through sock_diag (NETLINK_SOCK_DIAG, what `ss -t` reads), with the
 * cgroup of each socket (INET_DIAG_CGROUP_ID, sent for every full socket since Linux 5.7): shared-stack contexts
 * tell their connections apart by cgroup. A dump walks the host-wide TCP hash table (~1 ms per family here, however
 * few sockets the netns has), so l2 contexts count theirs from their netns's TCP MIB instead (proc-net.ts).
 */
import { AF_INET, AF_INET6, type MessageWriter, NetlinkSocket, parseAttrs } from "./netlink.ts";

const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const IPPROTO_TCP = 6;
const INET_DIAG_MSG_LEN = 72;
const INET_DIAG_CGROUP_ID = 21;

/**
 * The states the TCP MIB counts as CurrEstab (kernel/proc-net.ts reads it for a whole netns): ESTABLISHED and
 * CLOSE_WAIT, so a shared-stack context's connections mean what an l2 context's do.
 */
const TCP_ESTABLISHED = 1;
const TCP_CLOSE_WAIT = 8;
const OPEN_STATES = (1 << TCP_ESTABLISHED) | (1 << TCP_CLOSE_WAIT);

/** One open TCP connection: its socket's cgroup id (0 when the kernel sent none). */
export interface TcpConnection {
  cgroupId: bigint;
}

function request(w: MessageWriter, family: number): void {
  // struct inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed inet_diag_sockid (48 bytes).
  w.u8(family).u8(IPPROTO_TCP).u8(0).u8(0).u32(OPEN_STATES);
  for (let i = 0; i < 12; i++) w.u32(0);
}

/** Open TCP connections (ESTABLISHED, CLOSE_WAIT) of the socket's netns, v4 and v6. */
export function openTcpConnections(sock: NetlinkSocket): TcpConnection[] {
  const out: TcpConnection[] = [];
  for (const family of [AF_INET, AF_INET6])
    for (const c of sock.dump(
      "sock diag tcp",
      SOCK_DIAG_BY_FAMILY,
      (w) => request(w, family),
      (m) => {
        if (m.type !== SOCK_DIAG_BY_FAMILY) return undefined;
        const a = parseAttrs(m.buf, m.offset + INET_DIAG_MSG_LEN, m.end, INET_DIAG_CGROUP_ID);
        const o = a.offset(INET_DIAG_CGROUP_ID);
        return { cgroupId: o === undefined ? 0n : m.buf.readBigUInt64LE(o) };
      },
    ))
      out.push(c);
  return out;
}

/** A sock_diag socket in the current netns (open it inside a setns window for another). */
export function openSockDiag(): NetlinkSocket {
  return NetlinkSocket.open(NETLINK_SOCK_DIAG);
}
