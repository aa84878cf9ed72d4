/**
 * Published ports on the host's loopback (127.0.0.1 and ::1) without route_localnet: a cgroup connect4/connect6
 * program rewrites `connect(127.0.0.1:HOSTPORT)` into `connect(CONTEXT:PORT)` before any packet exists, so no
 * packet with a loopback address ever leaves lo and nothing from off-host can reach 127.0.0.1. nft cannot do
 * this: DNAT in output keeps the 127.0.0.1 source, and IPv4 output routing refuses a loopback source on a
 * non-loopback device unless route_localnet is set (which the reference portmap plugin sets, opening
 * 127.0.0.1 to the segment); for ::1 there is no such switch at all.
 *
 * One small program per publication (constants, no map), named ncpub<family><t|u><port>, attached with
 * allow-multi at the publish cgroup (config.publishCgroup): the cgroup2 root by default, so every process of the
 * host is covered; NETCTX_PUBLISH_CGROUP overrides it, and under tests (NETCTX_CGROUP_PARENT set) the default is
 * that parent, never the machine's root. The program also checks the socket's netns cookie: cgroup hooks run in every netns, and
 * a container's own 127.0.0.1:8080 must stay its own.
 * Covered: TCP and connected UDP. Unconnected UDP sendto(127.0.0.1) is not rewritten.
 */
import { mkdirSync } from "node:fs";
import koffi from "koffi";
import { NetctxError } from "../../errors.ts";
import { ipBytes, parseIp } from "../../net/cidr.ts";
import { cgroup2Root } from "../cgroup.ts";
import { KernelError } from "../errors.ts";
import { close, errno, socket } from "../ffi.ts";
import { type AttachTypeName, Helper, ProgType, SockAddr } from "./abi.ts";
import { Asm, R0, R1, R2, R3, R6 } from "./asm.ts";
import {
  attachProgram,
  detachFrom,
  detachProgram,
  loadProgram,
  openCgroup,
  progFdById,
  progInfo,
  queryPrograms,
  withFd,
} from "./attach.ts";
import { addrWords, type ProgramSpec } from "./program-spec.ts";
import { closeFd } from "./syscall.ts";

/** A published port as the loopback program forwards it (model/publish.ts's Published has this shape). */
export interface LoopbackForward {
  /** Only connections to this host address; absent = loopback of both families. */
  hostIp?: string;
  hostPort: number;
  /** The context's port. */
  port: number;
  protocol: "tcp" | "udp";
}

export const LOOPBACK_PREFIX = "ncpub";
const HOOKS: Record<4 | 6, AttachTypeName> = { 4: "CGROUP_INET4_CONNECT", 6: "CGROUP_INET6_CONNECT" };
const IPPROTO = { tcp: 6, udp: 17 } as const;
const SOL_SOCKET = 1;
const SO_NETNS_COOKIE = 71;

const getsockopt = koffi
  .load("libc.so.6")
  .func("int getsockopt(int fd, int level, int name, _Out_ uint8_t *value, _Inout_ uint32_t *len)") as (
  fd: number,
  level: number,
  name: number,
  value: Uint8Array,
  len: number[],
) => number;

/**
 * Where the loopback programs are attached (see the header; `configured` is config.publishCgroup, undefined for
 * the cgroup2 root), or undefined when a configured cgroup cannot be made: it is created only inside an existing
 * directory, so a cgroup2 hierarchy mounted elsewhere (a container's view) never gets stray directories at its root.
 */
export function publishCgroup(configured: string | undefined): string | undefined {
  if (configured === undefined) return cgroup2Root();
  try {
    mkdirSync(configured);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    if (code !== "EEXIST") throw err;
  }
  return configured;
}

/** The netns cookie of this process's network namespace (the host's). */
export function hostNetnsCookie(): bigint {
  const fd = socket(2, 2 | 0o2000000, 0);
  if (fd < 0) throw new KernelError("socket", errno());
  try {
    const buf = new Uint8Array(8);
    const len = [8];
    if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, buf, len) !== 0)
      throw new KernelError("getsockopt SO_NETNS_COOKIE", errno());
    return new DataView(buf.buffer).getBigUint64(0, true);
  } finally {
    close(fd);
  }
}

/** Publications the loopback hook serves: no host address (all of them), or a loopback one. */
export function loopbackPublications(published: readonly LoopbackForward[]): LoopbackForward[] {
  return published.filter((p) => p.hostIp === undefined || p.hostIp === "127.0.0.1" || p.hostIp === "::1");
}

export function programName(family: 4 | 6, p: Pick<LoopbackForward, "protocol" | "hostPort">): string {
  return `${LOOPBACK_PREFIX}${family}${p.protocol[0]}${p.hostPort}`;
}

function portWord(port: number): number {
  // user_port is a u32 holding the port in network byte order in its first two bytes.
  return ((port & 0xff) << 8) | (port >> 8);
}

export function loopbackProgram(
  family: 4 | 6,
  p: LoopbackForward,
  target: string,
  cookie: bigint,
): ProgramSpec {
  const loop = family === 4 ? addrWords(new Uint8Array([127, 0, 0, 1])) : [0, 0, 0, 0x01000000];
  const to = addrWords(ipBytes(parseIp(target, "publish")));
  const off = family === 4 ? SockAddr.userIp4 : SockAddr.userIp6;
  const a = new Asm();
  a.mov64Reg(R6, R1);
  loop.forEach((w, i) => {
    a.ldx("w", R2, R6, off + 4 * i);
    a.jmp32Imm("ne", R2, w, "out");
  });
  a.ldx("w", R2, R6, SockAddr.userPort);
  a.jmp32Imm("ne", R2, portWord(p.hostPort), "out");
  a.ldx("w", R2, R6, SockAddr.protocol);
  a.jmp32Imm("ne", R2, IPPROTO[p.protocol], "out");
  a.mov64Reg(R1, R6);
  a.call(Helper.get_netns_cookie);
  a.ldImm64(R3, cookie);
  a.jmpReg("ne", R0, R3, "out");
  to.forEach((w, i) => {
    // BPF_ST (store immediate) into the context is refused by the verifier; go through a register.
    a.mov32Imm(R3, w);
    a.stx("w", R6, off + 4 * i, R3);
  });
  a.mov32Imm(R3, portWord(p.port));
  a.stx("w", R6, SockAddr.userPort, R3);
  a.label("out");
  a.ret(1);
  return {
    name: programName(family, p),
    progType: ProgType.CGROUP_SOCK_ADDR,
    attachType: HOOKS[family],
    insns: a.assemble(),
  };
}

/** Our loopback programs at the publish cgroup: name, hook and an open fd (the caller closes it). */
function attached(cg: number): { name: string; type: AttachTypeName; fd: number }[] {
  const out: { name: string; type: AttachTypeName; fd: number }[] = [];
  for (const type of Object.values(HOOKS)) {
    for (const id of queryPrograms(cg, type)) {
      let fd: number;
      try {
        fd = progFdById(id);
      } catch {
        continue; // detached meanwhile
      }
      const name = progInfo(fd).name;
      if (name.startsWith(LOOPBACK_PREFIX)) out.push({ name, type, fd });
      else closeFd(fd);
    }
  }
  return out;
}

/**
 * Attach one program per loopback publication of a context (target: its v4 and v6 address). A program of the
 * same name (a crashed context's leftover: the engine refused a live conflict already) is replaced.
 */
export function attachLoopbackPublish(
  cgroup: string | undefined,
  published: readonly LoopbackForward[],
  target: { v4?: string; v6?: string },
): void {
  const specs: ProgramSpec[] = [];
  const cookie = hostNetnsCookie();
  for (const p of loopbackPublications(published)) {
    if (target.v4 !== undefined && p.hostIp !== "::1") specs.push(loopbackProgram(4, p, target.v4, cookie));
    if (target.v6 !== undefined && p.hostIp !== "127.0.0.1")
      specs.push(loopbackProgram(6, p, target.v6, cookie));
  }
  const where = publishCgroup(cgroup);
  if (specs.length === 0 || where === undefined) return;
  withFd(openCgroup(where), (cg) => {
    const old = attached(cg);
    const loaded: { spec: ProgramSpec; fd: number }[] = [];
    const done: { spec: ProgramSpec; fd: number }[] = [];
    try {
      for (const spec of specs) loaded.push({ spec, fd: loadProgram(spec) });
      try {
        for (const l of loaded) {
          attachProgram(cg, l.fd, l.spec.attachType);
          done.push(l);
        }
      } catch (err) {
        for (const l of done) detachProgram(cg, l.fd, l.spec.attachType);
        throw err;
      }
      for (const o of old)
        if (specs.some((s) => s.name === o.name && s.attachType === o.type)) detachProgram(cg, o.fd, o.type);
    } finally {
      for (const x of [...loaded, ...old]) closeFd(x.fd);
    }
  });
}

/** Detach the programs of these publications; missing ones (and a missing cgroup) are fine. */
export function detachLoopbackPublish(
  cgroup: string | undefined,
  published: readonly LoopbackForward[],
): void {
  const names = new Set(
    loopbackPublications(published).flatMap((p) => [programName(4, p), programName(6, p)]),
  );
  if (names.size === 0) return;
  const where = publishCgroup(cgroup);
  if (where === undefined) return;
  // Programs of other publications are listed too, and closed without being detached.
  detachFrom(where, (cg) => {
    const all = attached(cg);
    for (const o of all) if (!names.has(o.name)) closeFd(o.fd);
    return all.filter((o) => names.has(o.name));
  });
}

/** Names of the loopback programs attached now (gc and tests). */
export function loopbackProgramNames(cgroup: string | undefined): string[] {
  const where = publishCgroup(cgroup);
  if (where === undefined) return [];
  let cg: number;
  try {
    cg = openCgroup(where);
  } catch (err) {
    if (err instanceof NetctxError && err.code === "not-found") return [];
    throw err;
  }
  return withFd(cg, () => {
    const ours = attached(cg);
    for (const o of ours) closeFd(o.fd);
    return ours.map((o) => o.name).sort();
  });
}
