/**
 * Loopback like a jail, for the shared-stack levels (FreeBSD's prison_local_ip4/prison_remote_ip4, Linux-VServer's
 * per-context lback): a context's 127.0.0.0/8 and ::1 are its own address. The bind hooks store the context's address
 * over a loopback one, the connect and sendmsg hooks send to it instead, so applications that talk to themselves
 * over localhost work and the host's loopback services are out of reach. A host port allowed on purpose
 * (`--allow-host-port`) is left alone: the connection reaches the host's loopback service, from the context's address.
 *
 * These are the pieces programs.ts assembles into its bind, connect, sendmsg and recvmsg programs. Each leaves the
 * context pointer in its base register and clobbers only r3 and r4.
 */
import { SockAddr } from "./abi.ts";
import { type Asm, R3, R4, type Reg } from "./asm.ts";
import type { AddrWords } from "./program-spec.ts";

const IPPROTO = { tcp: 6, udp: 17 } as const;

/** A host loopback port a context may reach (model/host-port.ts's HostPort has this shape). */
export interface HostPort {
  port: number;
  protocol: "tcp" | "udp";
}
/** 127.0.0.1 and ::1 as the words a load yields (network byte order read little-endian). */
export const LOOPBACK4: AddrWords = [0x0100007f];
export const LOOPBACK6: AddrWords = [0, 0, 0, 0x01000000];
/** The first three words of ::ffff:a.b.c.d; the fourth is the IPv4 address. */
const V4_MAPPED_PREFIX: AddrWords = [0, 0, 0xffff0000];

/** Jump to `target` unless the IPv4 address word at base+off is in 127.0.0.0/8 (its first byte is the low byte). */
export function unlessLoopback4(a: Asm, base: Reg, off: number, target: string): void {
  a.ldx("w", R3, base, off);
  a.alu32Imm("and", R3, 0xff);
  a.jmp32Imm("ne", R3, 127, target);
}

export function unlessLoopback6(a: Asm, base: Reg, off: number, target: string): void {
  unlessWords(a, base, off, LOOPBACK6, target);
}

/** Jump to `target` unless the IPv6 address at base+off is v4-mapped (::ffff:0:0/96). */
export function unlessV4Mapped(a: Asm, base: Reg, off: number, target: string): void {
  unlessWords(a, base, off, V4_MAPPED_PREFIX, target);
}

/** The v4-mapped form of an IPv4 address, as IPv6 words. */
export function v4Mapped(addr4: AddrWords): AddrWords {
  return [...V4_MAPPED_PREFIX, addr4[0]!];
}

function unlessWords(a: Asm, base: Reg, off: number, words: AddrWords, target: string): void {
  words.forEach((w, i) => {
    a.ldx("w", R3, base, off + 4 * i);
    a.jmp32Imm("ne", R3, w, target);
  });
}

/** user_port holds the port in network byte order in its low two bytes. */
export function portWord(port: number): number {
  return ((port & 0xff) << 8) | (port >> 8);
}

/**
 * Jump to `target` when the destination port and the socket's protocol are one of `ports` (bpf_sock_addr of a
 * connect or sendmsg hook in `base`). `tag` keeps the labels of two uses in one program apart.
 */
export function ifHostPortAllowed(
  a: Asm,
  base: Reg,
  ports: readonly HostPort[],
  target: string,
  tag: string,
): void {
  if (ports.length === 0) return;
  a.ldx("w", R3, base, SockAddr.userPort);
  a.ldx("w", R4, base, SockAddr.protocol);
  ports.forEach((p, i) => {
    const next = `${tag}-port-${i}`;
    a.jmp32Imm("ne", R3, portWord(p.port), next);
    a.jmp32Imm("eq", R4, IPPROTO[p.protocol], target);
    a.label(next);
  });
}
