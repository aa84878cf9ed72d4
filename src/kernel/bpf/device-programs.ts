/**
 * The l3 level's device guard: which devices a context's sockets may name, and which devices its packets may leave
 * through. Per context, with the devices as constants (ifindexes resolved when the programs are made), like the
 * address programs of programs.ts.
 *
 * Why both: an l3 context's own routing table is chosen by policy rules, and a flow with an output device set
 * (SO_BINDTODEVICE, IP_UNICAST_IF, a sendmsg with IP_PKTINFO...) matches none of its routes through other devices,
 * so the fib rules go on to the host's main table, which reaches every network. For IPv4 even a rule that stops the
 * lookup does not help: when the lookup fails and an output device is set, ip_route_output_key_hash_rcu assumes the
 * destination is on that device's link and sends there anyway. The setsockopt hook refuses the options; the egress
 * hook catches what no option carries (ancillary data, broadcasts and link-local multicast, which never consult a
 * table when a device is given, IPv6 scope ids) and what the setsockopt hook never sees: __sys_setsockopt runs it
 * only `if (!in_compat_syscall())`, so a 32-bit process sets any of these options unasked.
 */
// SO_BINDTODEVICE reads at most IFNAMSIZ - 1 bytes of the name (IFNAME_MAX) and stops at the first NUL.
import { IFNAME_MAX } from "../../net/ifname.ts";
import { ETH_P_IP_LE, ETH_P_IPV6_LE, ProgType, SkBuff, SockOpt } from "./abi.ts";
import { Asm, R1, R2, R3, R4, R6, R7, R8, R9 } from "./asm.ts";
import { countDrop } from "./counter-program.ts";
import type { AddrWords, ProgramSpec } from "./program-spec.ts";

const SOL_IP = 0;
const SOL_SOCKET = 1;
const SOL_IPV6 = 41;
const SO_BINDTODEVICE = 25;
const SO_BINDTOIFINDEX = 62;
const IP_MULTICAST_IF = 32;
const IP_UNICAST_IF = 50;
const IPV6_MULTICAST_IF = 17;
/** As a socket option (RFC 3542's sticky form), struct in6_pktinfo: the ifindex sits after the 16-byte address. */
const IPV6_PKTINFO = 50;
const IPV6_UNICAST_IF = 76;
/** LOOPBACK_IFINDEX: lo is 1 in every netns; local deliveries leave through it. */
const LOOPBACK_IFINDEX = 1;

export interface BindableDevices {
  /** Device names, each at most 15 bytes (an interface name). */
  names: string[];
  ifindexes: number[];
}

/** The ifindex as IP_UNICAST_IF and IPV6_UNICAST_IF carry it (network byte order), read as a little-endian u32. */
function networkOrder(ifindex: number): number {
  return (
    (((ifindex & 0xff) << 24) | ((ifindex & 0xff00) << 8) | ((ifindex >>> 8) & 0xff00) | (ifindex >>> 24)) >>>
    0
  );
}

/** r8 = optval, r9 = optval_end; jump to `short` unless `bytes` bytes from optval are readable. */
function need(a: Asm, bytes: number, short: string): void {
  a.mov64Reg(R4, R8);
  a.alu64Imm("add", R4, bytes);
  a.jmpReg("gt", R4, R9, short);
}

/** The u32 at optval+off (r3) must be 0 or one of `values`; optlen (r7) must cover it. */
function checkWord(a: Asm, off: number, values: number[]): void {
  a.jmp32Imm("lt", R7, off + 4, "deny");
  need(a, off + 4, "deny");
  a.ldx("w", R3, R8, off);
  a.jmp32Imm("eq", R3, 0, "allow");
  for (const v of values) a.jmp32Imm("eq", R3, v, "allow");
  a.ja("deny");
}

/**
 * SO_BINDTODEVICE: the name the kernel looks up is the first min(optlen, 15) bytes up to the first NUL. An empty
 * name unbinds. Compared byte by byte with each allowed name (no string compare helper in this program type).
 */
function checkName(a: Asm, names: string[]): void {
  a.jmp32Imm("le", R7, IFNAME_MAX, "name-len");
  a.mov32Imm(R7, IFNAME_MAX);
  a.label("name-len");
  a.jmp32Imm("eq", R7, 0, "allow");
  need(a, 1, "deny");
  a.ldx("b", R3, R8, 0);
  a.jmp32Imm("eq", R3, 0, "allow");
  names.forEach((name, k) => {
    const bytes = new TextEncoder().encode(name);
    const next = `name-${k + 1}`;
    a.jmp32Imm("lt", R7, bytes.length, next);
    need(a, bytes.length, "deny");
    bytes.forEach((byte, i) => {
      a.ldx("b", R3, R8, i);
      a.jmp32Imm("ne", R3, byte, next);
    });
    if (bytes.length < IFNAME_MAX) {
      // "nc-hn" must not match "nc-hnx": the name ends here when optlen does or the next byte is NUL.
      a.jmp32Imm("eq", R7, bytes.length, "allow");
      need(a, bytes.length + 1, "deny");
      a.ldx("b", R3, R8, bytes.length);
      a.jmp32Imm("eq", R3, 0, "allow");
      a.ja(next);
    } else a.ja("allow");
    a.label(next);
  });
  a.ja("deny");
}

/**
 * IP_MULTICAST_IF takes struct ip_mreqn (ifindex at 8, 0 = by address at 4), struct ip_mreq (address at 4) or a
 * bare struct in_addr (address at 0), told apart by optlen. An address picks the device that holds it: only the
 * context's own (on its network's device) or 0 (unset) may be given.
 */
function checkMulticast4(a: Asm, devices: BindableDevices, own4: AddrWords | undefined): void {
  const address = (off: number) => {
    need(a, off + 4, "deny");
    a.ldx("w", R3, R8, off);
    a.jmp32Imm("eq", R3, 0, "allow");
    if (own4) a.jmp32Imm("eq", R3, own4[0]!, "allow");
    a.ja("deny");
  };
  a.jmp32Imm("lt", R7, 4, "deny");
  a.jmp32Imm("lt", R7, 8, "mc4-inaddr");
  a.jmp32Imm("lt", R7, 12, "mc4-mreq");
  need(a, 12, "deny");
  a.ldx("w", R3, R8, 8);
  a.jmp32Imm("eq", R3, 0, "mc4-mreq");
  for (const v of devices.ifindexes) a.jmp32Imm("eq", R3, v, "allow");
  a.ja("deny");
  a.label("mc4-mreq");
  address(4);
  a.label("mc4-inaddr");
  address(0);
}

/**
 * setsockopt: the options that give a socket an output device name one of the context's own devices, or unset it;
 * anything else is EPERM (return 0). All other options pass untouched (return 1, optlen unchanged: the kernel
 * handles the caller's value).
 */
export function sockoptProgram(devices: BindableDevices, own4: AddrWords | undefined): ProgramSpec {
  const a = new Asm();
  const host = devices.ifindexes;
  const net = devices.ifindexes.map(networkOrder);
  a.mov64Reg(R6, R1);
  a.ldx("w", R2, R6, SockOpt.level);
  a.ldx("w", R3, R6, SockOpt.optname);
  a.jmp32Imm("eq", R2, SOL_SOCKET, "sol-socket");
  a.jmp32Imm("eq", R2, SOL_IP, "sol-ip");
  a.jmp32Imm("eq", R2, SOL_IPV6, "sol-ipv6");
  a.ja("allow");
  a.label("sol-socket");
  a.jmp32Imm("eq", R3, SO_BINDTODEVICE, "bindtodevice");
  a.jmp32Imm("eq", R3, SO_BINDTOIFINDEX, "int-host");
  a.ja("allow");
  a.label("sol-ip");
  a.jmp32Imm("eq", R3, IP_UNICAST_IF, "int-net");
  a.jmp32Imm("eq", R3, IP_MULTICAST_IF, "multicast4");
  a.ja("allow");
  a.label("sol-ipv6");
  a.jmp32Imm("eq", R3, IPV6_UNICAST_IF, "int-net");
  a.jmp32Imm("eq", R3, IPV6_MULTICAST_IF, "int-host");
  a.jmp32Imm("eq", R3, IPV6_PKTINFO, "pktinfo6");
  a.label("allow");
  a.ret(1);

  // Every check below reads optval: r7 = optlen, r8 = optval, r9 = optval_end.
  const load = (label: string) => {
    a.label(label);
    a.ldx("w", R7, R6, SockOpt.optlen);
    a.ldx("dw", R8, R6, SockOpt.optval);
    a.ldx("dw", R9, R6, SockOpt.optvalEnd);
  };
  load("bindtodevice");
  checkName(a, devices.names);
  load("int-host");
  checkWord(a, 0, host);
  // IP_UNICAST_IF and IPV6_UNICAST_IF take the ifindex in network byte order (ntohl in the kernel).
  load("int-net");
  checkWord(a, 0, net);
  load("pktinfo6");
  checkWord(a, 16, host);
  load("multicast4");
  checkMulticast4(a, devices, own4);
  a.label("deny");
  a.ret(0);
  return {
    name: "nctx_sockopt",
    progType: ProgType.CGROUP_SOCKOPT,
    attachType: "CGROUP_SETSOCKOPT",
    insns: a.assemble(),
  };
}

export interface EgressDevices {
  /** Devices IPv4 packets may leave through; undefined: any (the family has no default route of its own). */
  ipv4?: number[];
  ipv6?: number[];
}

/**
 * Egress: a packet of a family the context routes all by itself (its table has a default route for it) leaves
 * only through a device its table uses, or lo. skb->ifindex is the output device here (ip_finish_output and
 * ip6_finish_output run the hook after the route set skb->dev). A drop is EPERM to the sender.
 */
export function egressProgram(devices: EgressDevices, dropCounters?: number): ProgramSpec {
  const a = new Asm();
  a.mov64Reg(R6, R1);
  a.ldx("w", R2, R6, SkBuff.protocol);
  a.ldx("w", R3, R6, SkBuff.ifindex);
  for (const [family, proto] of [
    [4, ETH_P_IP_LE],
    [6, ETH_P_IPV6_LE],
  ] as const) {
    const allowed = family === 4 ? devices.ipv4 : devices.ipv6;
    if (allowed === undefined) continue;
    a.jmp32Imm("ne", R2, proto, `not-v${family}`);
    for (const ifindex of new Set([LOOPBACK_IFINDEX, ...allowed])) a.jmp32Imm("eq", R3, ifindex, "pass");
    a.ja("deny");
    a.label(`not-v${family}`);
  }
  a.label("pass");
  a.ret(1);
  a.label("deny");
  // Counted as the context's refused tx (counter-program.ts), when the counters' map is given.
  if (dropCounters !== undefined) countDrop(a, dropCounters, "tx", 0);
  else a.ret(0);
  return {
    name: "nctx_egress",
    progType: ProgType.CGROUP_SKB,
    attachType: "CGROUP_INET_EGRESS",
    insns: a.assemble(),
  };
}
