/**
 * The socket-isolation programs, one per cgroup hook, with the context's addresses baked in as constants
 * (measured cheaper than a map lookup keyed by cgroup id; see bench/bpf-hooks.ts).
 *
 * Addresses are compared as the u32 words the program loads from memory. Kernel structs hold them in network
 * byte order, so on this little-endian machine the constant is the address bytes read as little-endian u32s.
 *
 * Loopback is the context's own (jail-loopback.ts): a bind to 127.0.0.0/8 or ::1 binds the context's address, a
 * connect or datagram to one goes to the context's address, except to the host ports it was allowed. Contexts so
 * never share loopback ports nor reach each other's or the host's loopback listeners. Replies do not come back from
 * 127.0.0.1: getsockname and getpeername show the context's address, as in a FreeBSD jail; only a UDP datagram from
 * the context's own address is shown as from loopback (recvmsg), because UDP clients check where a reply came from.
 */
import { ETH_P_IP_LE, ETH_P_IPV6_LE, Helper, ProgType, SkBuff, Sock, SockAddr } from "./abi.ts";
import { Asm, FP, R0, R1, R2, R3, R4, R6, type Reg } from "./asm.ts";
import { countDrop } from "./counter-program.ts";
import {
  type BindableDevices,
  type EgressDevices,
  egressProgram,
  sockoptProgram,
} from "./device-programs.ts";
import {
  type HostPort,
  ifHostPortAllowed,
  LOOPBACK4,
  LOOPBACK6,
  unlessLoopback4,
  unlessLoopback6,
  unlessV4Mapped,
  v4Mapped,
} from "./jail-loopback.ts";
import type { AddrWords, ProgramSpec } from "./program-spec.ts";

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;

export interface PolicyWords {
  ipv4?: AddrWords;
  ipv6?: AddrWords;
  fwmark?: number;
  /** l3: the devices its sockets may name (device-programs.ts). */
  devices?: BindableDevices;
  /** l3: the devices its packets may leave through, for the families it routes all by itself. */
  egress?: EgressDevices;
  /** Host loopback ports its connects and datagrams may reach (not jailed to its own address). */
  hostPorts?: HostPort[];
  /** The traffic counters' map (counter-program.ts): the packet programs count what they refuse there. */
  dropCounters?: number;
}

/** Jump to `target` unless the words at base+off equal `addr` (JMP32: a 64-bit compare sign-extends). */
function unlessEqual(a: Asm, base: Reg, off: number, addr: AddrWords, target: string): void {
  addr.forEach((w, i) => {
    a.ldx("w", R3, base, off + 4 * i);
    a.jmp32Imm("ne", R3, w, target);
  });
}

function unlessZero(a: Asm, base: Reg, off: number, words: number, target: string): void {
  for (let i = 0; i < words; i++) {
    a.ldx("w", R3, base, off + 4 * i);
    a.jmp32Imm("ne", R3, 0, target);
  }
}

function store(a: Asm, base: Reg, off: number, addr: AddrWords): void {
  addr.forEach((w, i) => {
    // BPF_ST (store immediate) into a context pointer is refused by the verifier; go through a register.
    a.mov32Imm(R3, w);
    a.stx("w", base, off + 4 * i, R3);
  });
}

/**
 * bind4/bind6: own address passes; the wildcard and loopback (127.0.0.0/8, ::1) are narrowed to it; anything else,
 * v4-mapped addresses included, is EPERM (return 0).
 */
export function bindProgram(family: 4 | 6, addr: AddrWords | undefined): ProgramSpec {
  const a = new Asm();
  const off = family === 4 ? SockAddr.userIp4 : SockAddr.userIp6;
  if (addr === undefined) a.ret(0);
  else {
    a.mov64Reg(R6, R1);
    unlessEqual(a, R6, off, addr, "not-own");
    a.ret(1);
    a.label("not-own");
    if (family === 4) unlessLoopback4(a, R6, off, "not-loopback");
    else unlessLoopback6(a, R6, off, "not-loopback");
    a.ja("narrow");
    a.label("not-loopback");
    unlessZero(a, R6, off, addr.length, "deny");
    a.label("narrow");
    store(a, R6, off, addr);
    a.ret(1);
    a.label("deny");
    a.ret(0);
  }
  return {
    name: `nctx_bind${family}`,
    progType: ProgType.CGROUP_SOCK_ADDR,
    attachType: family === 4 ? "CGROUP_INET4_BIND" : "CGROUP_INET6_BIND",
    insns: a.assemble(),
  };
}

/**
 * connect4/connect6: a loopback destination becomes the context's address (unless it is an allowed host port); then
 * the socket is bound to the context's address (port 0 = pick the port at connect, the IP_BIND_ADDRESS_NO_PORT way)
 * with the bpf_bind helper. A socket already bound to its own address passes. bpf_bind fails (EINVAL) on any other
 * bound socket, e.g. a UDP socket auto-bound to the wildcard by an earlier sendmsg: the connect is refused then, or
 * it would leave with whatever source the route picks.
 *
 * A v4-mapped destination on an IPv6 socket is an IPv4 connection (tcp_v6_connect hands it to tcp_v4_connect, UDP
 * to __ip4_datagram_connect) that the connect4 hook never sees, so connect6 treats it as connect4 would, with the
 * v4-mapped form of the context's IPv4 address. Bound to the IPv6 address instead, the socket's IPv4 side would be
 * 127.0.0.6 (LOOPBACK4_IPV6), a source that reaches the host's loopback.
 */
export function connectProgram(
  family: 4 | 6,
  addr: AddrWords | undefined,
  hostPorts: readonly HostPort[] = [],
  addr4?: AddrWords,
): ProgramSpec {
  const a = new Asm();
  a.mov64Reg(R6, R1);
  if (family === 6) {
    unlessV4Mapped(a, R6, SockAddr.userIp6, "native");
    if (addr4 === undefined) a.ret(0);
    else {
      unlessLoopback4(a, R6, SockAddr.userIp6 + 12, "mapped-dst-done");
      ifHostPortAllowed(a, R6, hostPorts, "mapped-dst-done", "mapped");
      store(a, R6, SockAddr.userIp6 + 12, addr4);
      a.label("mapped-dst-done");
      bindToOwn(a, 6, v4Mapped(addr4), "mapped");
    }
    a.label("native");
  }
  const off = family === 4 ? SockAddr.userIp4 : SockAddr.userIp6;
  if (addr === undefined) a.ret(0);
  else {
    if (family === 4) unlessLoopback4(a, R6, off, "own-dst-done");
    else unlessLoopback6(a, R6, off, "own-dst-done");
    ifHostPortAllowed(a, R6, hostPorts, "own-dst-done", "own");
    store(a, R6, off, addr);
    a.label("own-dst-done");
    bindToOwn(a, family, addr, "own");
  }
  return {
    name: `nctx_connect${family}`,
    progType: ProgType.CGROUP_SOCK_ADDR,
    attachType: family === 4 ? "CGROUP_INET4_CONNECT" : "CGROUP_INET6_CONNECT",
    insns: a.assemble(),
  };
}

/** Pass a socket bound to `addr` already, else bpf_bind it there; return 1 on success, 0 (EPERM) if that fails. */
function bindToOwn(a: Asm, family: 4 | 6, addr: AddrWords, tag: string): void {
  a.ldx("dw", R2, R6, SockAddr.sk);
  unlessEqual(a, R2, family === 4 ? Sock.srcIp4 : Sock.srcIp6, addr, `${tag}-bind`);
  a.ret(1);
  a.label(`${tag}-bind`);
  // struct sockaddr_in (16 bytes) / sockaddr_in6 (28) at fp-32, zeroed first: helpers read only initialised stack.
  a.mov64Imm(R3, 0);
  for (let o = -32; o < 0; o += 8) a.stx("dw", FP, o, R3);
  a.mov64Imm(R3, family === 4 ? AF_INET : AF_INET6);
  a.stx("h", FP, -32, R3);
  const addrOff = family === 4 ? -28 : -24;
  addr.forEach((w, i) => {
    a.mov32Imm(R3, w);
    a.stx("w", FP, addrOff + 4 * i, R3);
  });
  a.mov64Reg(R1, R6);
  a.mov64Reg(R2, FP);
  a.alu64Imm("add", R2, -32);
  a.mov64Imm(R3, family === 4 ? 16 : 28);
  a.call(Helper.bind);
  a.jmpImm("ne", R0, 0, `${tag}-deny`);
  a.ret(1);
  a.label(`${tag}-deny`);
  a.ret(0);
}

/**
 * sendmsg4/sendmsg6 (unconnected UDP): a loopback destination becomes the context's address (unless it is an allowed
 * host port), and the datagram's source is the context's address: bpf_bind is not allowed here. A v4-mapped
 * destination never reaches sendmsg6: udpv6_sendmsg hands it to udp_sendmsg, which runs sendmsg4.
 */
export function sendmsgProgram(
  family: 4 | 6,
  addr: AddrWords | undefined,
  hostPorts: readonly HostPort[] = [],
): ProgramSpec {
  const a = new Asm();
  if (addr === undefined) a.ret(0);
  else {
    const off = family === 4 ? SockAddr.userIp4 : SockAddr.userIp6;
    a.mov64Reg(R6, R1);
    if (family === 4) unlessLoopback4(a, R6, off, "source");
    else unlessLoopback6(a, R6, off, "source");
    ifHostPortAllowed(a, R6, hostPorts, "source", "dst");
    store(a, R6, off, addr);
    a.label("source");
    store(a, R6, family === 4 ? SockAddr.msgSrcIp4 : SockAddr.msgSrcIp6, addr);
    a.ret(1);
  }
  return {
    name: `nctx_sendmsg${family}`,
    progType: ProgType.CGROUP_SOCK_ADDR,
    attachType: family === 4 ? "CGROUP_UDP4_SENDMSG" : "CGROUP_UDP6_SENDMSG",
    insns: a.assemble(),
  };
}

/**
 * recvmsg4/recvmsg6 (UDP): a datagram from the context's own address is shown as from loopback, so a client that
 * sent to 127.0.0.1 (jailed to the context's address) takes the answer as the one it waits for: glibc's resolver
 * drops an answer from any other address than its nameserver's. A client that sent to the context's address
 * explicitly sees its answers from loopback too: the price of a hook without memory of what was sent.
 */
export function recvmsgProgram(family: 4 | 6, addr: AddrWords | undefined, addr4?: AddrWords): ProgramSpec {
  const a = new Asm();
  a.mov64Reg(R6, R1);
  const off = family === 4 ? SockAddr.userIp4 : SockAddr.userIp6;
  if (addr !== undefined) {
    unlessEqual(a, R6, off, addr, "not-own");
    store(a, R6, off, family === 4 ? LOOPBACK4 : LOOPBACK6);
    a.ret(1);
    a.label("not-own");
  }
  if (family === 6 && addr4 !== undefined) {
    unlessEqual(a, R6, off, v4Mapped(addr4), "not-own4");
    store(a, R6, off, v4Mapped(LOOPBACK4));
    a.label("not-own4");
  }
  a.ret(1);
  return {
    name: `nctx_recvmsg${family}`,
    progType: ProgType.CGROUP_SOCK_ADDR,
    attachType: family === 4 ? "CGROUP_UDP4_RECVMSG" : "CGROUP_UDP6_RECVMSG",
    insns: a.assemble(),
  };
}

/**
 * Socket creation: only TCP stream and UDP datagram sockets. Everything else is refused because the
 * address hooks do not cover it: raw sockets, ICMP "ping" sockets (their bind bypasses the bind hook),
 * SCTP, MPTCP, UDP-Lite. Sets the socket mark when the context has an fwmark (the l3 level's table).
 */
export function sockCreateProgram(fwmark: number | undefined): ProgramSpec {
  const a = new Asm();
  a.ldx("w", R2, R1, Sock.type);
  a.ldx("w", R3, R1, Sock.protocol);
  a.jmp32Imm("ne", R2, SOCK_STREAM, "not-stream");
  a.jmp32Imm("eq", R3, IPPROTO_TCP, "allow");
  a.ret(0);
  a.label("not-stream");
  a.jmp32Imm("ne", R2, SOCK_DGRAM, "deny");
  a.jmp32Imm("eq", R3, IPPROTO_UDP, "allow");
  a.label("deny");
  a.ret(0);
  a.label("allow");
  if (fwmark !== undefined) {
    a.mov32Imm(R2, fwmark);
    a.stx("w", R1, Sock.mark, R2);
  }
  a.ret(1);
  return {
    name: "nctx_sock",
    progType: ProgType.CGROUP_SOCK,
    attachType: "CGROUP_INET_SOCK_CREATE",
    insns: a.assemble(),
  };
}

/**
 * Ingress: pass only packets addressed to the context. A socket that listens or sends without bind()
 * is auto-bound to the wildcard without any bind hook running; this is what keeps it from receiving
 * traffic for other contexts' (or loopback) addresses. skb->data is at the network header here.
 *
 * Every segment of every connection comes through here, so the common case is decided without touching the
 * packet: a socket bound to the context's own address (every connected socket and every listener that bound)
 * only ever gets packets the kernel's socket lookup matched to that address. Only sockets bound to the wildcard
 * need the destination read from the header (bpf_skb_load_bytes, about a fifth of what the hook costs per packet in a perf profile of an iperf3 stream).
 */
export function ingressProgram(policy: PolicyWords): ProgramSpec {
  const a = new Asm();
  a.mov64Reg(R6, R1);
  a.ldx("w", R2, R6, SkBuff.protocol);
  a.jmp32Imm("eq", R2, ETH_P_IP_LE, "v4");
  a.jmp32Imm("eq", R2, ETH_P_IPV6_LE, "v6");
  a.ja("drop");
  for (const family of [4, 6] as const) {
    const addr = family === 4 ? policy.ipv4 : policy.ipv6;
    a.label(`v${family}`);
    if (addr === undefined) {
      a.ja("drop");
      continue;
    }
    unlessEqual(a, R6, family === 4 ? SkBuff.localIp4 : SkBuff.localIp6, addr, `v${family}-header`);
    a.ret(1);
    a.label(`v${family}-header`);
    // bpf_skb_load_bytes(skb, offsetof(daddr), fp-16, len)
    a.mov64Reg(R1, R6);
    a.mov64Imm(R2, family === 4 ? 16 : 24);
    a.mov64Reg(R3, FP);
    a.alu64Imm("add", R3, -16);
    a.mov64Imm(R4, addr.length * 4);
    a.call(Helper.skb_load_bytes);
    a.jmpImm("ne", R0, 0, "drop");
    a.mov64Reg(R2, FP);
    a.alu64Imm("add", R2, -16);
    unlessEqual(a, R2, 0, addr, "drop");
    a.ret(1);
  }
  a.label("drop");
  if (policy.dropCounters !== undefined) countDrop(a, policy.dropCounters, "rx", 0);
  else a.ret(0);
  return {
    name: "nctx_ingress",
    progType: ProgType.CGROUP_SKB,
    attachType: "CGROUP_INET_INGRESS",
    insns: a.assemble(),
  };
}

/** Every program of a policy, one per hook. */
export function policyPrograms(policy: PolicyWords): ProgramSpec[] {
  return [
    bindProgram(4, policy.ipv4),
    bindProgram(6, policy.ipv6),
    connectProgram(4, policy.ipv4, policy.hostPorts),
    connectProgram(6, policy.ipv6, policy.hostPorts, policy.ipv4),
    sendmsgProgram(4, policy.ipv4, policy.hostPorts),
    sendmsgProgram(6, policy.ipv6, policy.hostPorts),
    recvmsgProgram(4, policy.ipv4),
    recvmsgProgram(6, policy.ipv6, policy.ipv4),
    sockCreateProgram(policy.fwmark),
    ingressProgram(policy),
    ...devicePrograms(policy),
  ];
}

/** The l3 device guard's programs, those a policy asks for. */
export function devicePrograms(policy: PolicyWords): ProgramSpec[] {
  const out: ProgramSpec[] = [];
  if (policy.devices) out.push(sockoptProgram(policy.devices, policy.ipv4));
  if (policy.egress?.ipv4 || policy.egress?.ipv6) out.push(egressProgram(policy.egress, policy.dropCounters));
  return out;
}

/** Our programs carry this name prefix; PROG_QUERY + OBJ_GET_INFO tell ours from anybody else's. */
export const PROGRAM_PREFIX = "nctx_";
