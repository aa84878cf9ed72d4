/**
 * Cost of the socket-policy hooks: ns per socket()+bind()+close() and per socket()+connect()+close() (UDP,
 * so no handshake) with no programs, with the per-context programs (constants), and with a shared-style
 * bind4 program that looks the address up in a hash map keyed by cgroup id.
 *   node --import tsx bench/bpf-hooks.ts [iterations]
 * Runs itself inside a throwaway network namespace; its cgroups live under netctx-bench-<pid> and are removed.
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import koffi from "koffi";
import { Asm, FP, R0, R1, R2, R3, R6 } from "../src/kernel/bpf/asm.ts";
import { attachProgram, loadProgram, openCgroup, withFd } from "../src/kernel/bpf/attach.ts";
import { ProgType } from "../src/kernel/bpf/programs.ts";
import { attachSocketPolicy, policyWords } from "../src/kernel/bpf/socket-policy.ts";
import { BPF_ATTR_SIZE, BpfCmd, bpf, closeFd, withBuffers } from "../src/kernel/bpf/syscall.ts";
import { cgroup2Root, cgroupId, createCgroup, removeCgroup } from "../src/kernel/cgroup.ts";
import { insideSandbox, sandboxArgv } from "../src/sandbox.ts";

if (!insideSandbox()) {
  const argv = sandboxArgv([
    process.execPath,
    ...process.execArgv,
    process.argv[1]!,
    ...process.argv.slice(2),
  ]);
  const r = spawnSync(argv[0]!, argv.slice(1), { stdio: "inherit" });
  process.exit(r.status ?? 1);
}

const N = Number(process.argv[2] ?? 30_000);
const ADDR = "10.99.0.2";
const PEER = "10.99.0.1";
spawnSync("sh", [
  "-c",
  `ip link add nchost0 type bridge && ip link set nchost0 up && ip addr add ${PEER}/24 dev nchost0 && ip addr add ${ADDR}/24 dev nchost0`,
]);

const libc = koffi.load("libc.so.6");
const socketC = libc.func("int socket(int d, int t, int p)") as (d: number, t: number, p: number) => number;
const bindC = libc.func("int bind(int fd, const void *a, uint32_t l)") as (
  fd: number,
  a: Uint8Array,
  l: number,
) => number;
const connectC = libc.func("int connect(int fd, const void *a, uint32_t l)") as (
  fd: number,
  a: Uint8Array,
  l: number,
) => number;
const closeC = libc.func("int close(int fd)") as (fd: number) => number;

function sockaddrIn(ip: string, port: number): Uint8Array {
  const b = new Uint8Array(16);
  b[0] = 2;
  b[2] = port >> 8;
  b[3] = port & 0xff;
  b.set(ip.split(".").map(Number), 4);
  return b;
}

function measure(fn: () => void): number {
  for (let i = 0; i < 2000; i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) fn();
  return Number(process.hrtime.bigint() - t0) / N;
}

const wildcard = sockaddrIn("0.0.0.0", 0);
const peer = sockaddrIn(PEER, 9);
const bindClose = () => {
  const fd = socketC(2, 2, 0);
  if (bindC(fd, wildcard, 16) < 0) throw new Error(`bind failed: ${koffi.errno()}`);
  closeC(fd);
};
const connectClose = () => {
  const fd = socketC(2, 2, 0);
  if (connectC(fd, peer, 16) < 0) throw new Error(`connect failed: ${koffi.errno()}`);
  closeC(fd);
};

/** bind4 with a hash map {cgroup id -> IPv4 address}: what a shared program would run per bind. */
function mapBindProgram(cgroup: string): number {
  const mapFd = withBuffers([BPF_ATTR_SIZE], (attr) => {
    attr.view.setUint32(0, 1, true); // BPF_MAP_TYPE_HASH
    attr.view.setUint32(4, 8, true);
    attr.view.setUint32(8, 4, true);
    attr.view.setUint32(12, 1024, true);
    return bpf(BpfCmd.MAP_CREATE, attr, "bpf map create");
  });
  withBuffers([BPF_ATTR_SIZE, 8, 4], (attr, key, value) => {
    key.view.setBigUint64(0, cgroupId(cgroup), true);
    value.view.setUint32(0, policyWords({ ipv4: ADDR }).ipv4![0]!, true);
    attr.view.setUint32(0, mapFd, true);
    attr.view.setBigUint64(8, key.address, true);
    attr.view.setBigUint64(16, value.address, true);
    bpf(BpfCmd.MAP_UPDATE_ELEM, attr, "bpf map update");
  });
  const a = new Asm()
    .mov64Reg(R6, R1)
    .call(80) // bpf_get_current_cgroup_id
    .stx("dw", FP, -8, R0)
    .ldMapFd(R1, mapFd)
    .mov64Reg(R2, FP)
    .alu64Imm("add", R2, -8)
    .call(1) // bpf_map_lookup_elem
    .jmpImm("eq", R0, 0, "deny")
    .ldx("w", R2, R0, 0)
    .ldx("w", R3, R6, 4)
    .jmp32Reg("eq", R3, R2, "allow")
    .jmp32Imm("ne", R3, 0, "deny")
    .stx("w", R6, 4, R2)
    .label("allow")
    .ret(1)
    .label("deny")
    .ret(0);
  const fd = loadProgram({
    name: "nctx_bench_map",
    progType: ProgType.CGROUP_SOCK_ADDR,
    attachType: "CGROUP_INET4_BIND",
    insns: a.assemble(),
  });
  closeFd(mapFd);
  return fd;
}

const original = readFileSync("/proc/self/cgroup", "utf8").match(/^0::(.*)$/m)?.[1] ?? "/";
const parent = join(cgroup2Root(), `netctx-bench-${process.pid}`);
const cases = ["none", "constants", "map"] as const;
const enter = (cg: string) => writeFileSync(join(cg, "cgroup.procs"), String(process.pid));
const samples: Record<string, { bind: number[]; connect: number[] }> = {};
const ROUNDS = 7;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
try {
  for (const c of cases) {
    const cg = join(parent, c);
    createCgroup(cg);
    if (c === "constants") attachSocketPolicy(cg, { ipv4: ADDR });
    if (c === "map") {
      const fd = mapBindProgram(cg);
      withFd(openCgroup(cg), (cgFd) => attachProgram(cgFd, fd, "CGROUP_INET4_BIND"));
      closeFd(fd);
    }
    samples[c] = { bind: [], connect: [] };
  }
  // Rounds interleave the cases so drift (frequency, other load) hits all of them alike.
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of cases) {
      enter(join(parent, c));
      samples[c]!.bind.push(measure(bindClose));
      samples[c]!.connect.push(measure(connectClose));
    }
  }
} finally {
  enter(join(cgroup2Root(), original));
  for (const c of cases) removeCgroup(join(parent, c));
  removeCgroup(parent);
}
const results: Record<string, { bind: number; connect: number }> = {};
for (const c of cases) results[c] = { bind: median(samples[c]!.bind), connect: median(samples[c]!.connect) };
console.log(`ns per operation, median of ${ROUNDS} rounds of ${N} (map: bind4 only, connect unhooked)`);
for (const c of cases) {
  const r = results[c]!;
  const d = (v: number, base: number) => (c === "none" ? "" : ` (+${(v - base).toFixed(0)})`);
  console.log(
    `${c.padEnd(10)} socket+bind+close ${r.bind.toFixed(0)}${d(r.bind, results.none!.bind)}   socket+connect+close ${r.connect.toFixed(0)}${d(r.connect, results.none!.connect)}`,
  );
}
