/**
 * Cost of the socket-policy hooks: ns per socket()+bind()+close() and per socket()+connect()+close() (UDP,
 * so no handshake) with no programs, with the per-context programs (constants), and with a shared-style
 * bind4 program that looks the address up in a hash map keyed by cgroup id.
 * bench/run.ts calls measureBpfHooks(); standalone:
 *   node --import tsx bench/bpf-hooks.ts [rounds] [batches] [calls per batch]
 * which runs itself inside a throwaway network namespace. The cgroups live under the given parent (standalone:
 * netctx-bench-bpf-<pid>) and are removed; the calling process moves through them and back.
 */
import { spawnSync } from "node:child_process";
import { readFileSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import koffi from "koffi";
import { Asm, FP, R0, R1, R2, R3, R6 } from "../src/kernel/bpf/asm.ts";
import { attachProgram, loadProgram, openCgroup, withFd } from "../src/kernel/bpf/attach.ts";
import { createHashMap, mapUpdate } from "../src/kernel/bpf/maps.ts";
import { ProgType } from "../src/kernel/bpf/programs.ts";
import { attachSocketPolicy, policyWords } from "../src/kernel/bpf/socket-policy.ts";
import { closeFd } from "../src/kernel/bpf/syscall.ts";
import { cgroup2Root, cgroupId, createCgroup, removeCgroup } from "../src/kernel/cgroup.ts";
import { insideSandbox, sandboxArgv } from "../src/sandbox.ts";

const ADDR = "10.99.0.2";
const PEER = "10.99.0.1";
const DEVICE = "ncbpfbench0";

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

/** Mean ns per call over one batch. */
function batchMean(fn: () => void, calls: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) fn();
  return Number(process.hrtime.bigint() - t0) / calls;
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
  const mapFd = createHashMap({
    name: "nctx_bench_map",
    keySize: 8,
    valueSize: 4,
    maxEntries: 1024,
    preallocated: true,
  });
  const key = new Uint8Array(8);
  const value = new Uint8Array(4);
  new DataView(key.buffer).setBigUint64(0, cgroupId(cgroup), true);
  new DataView(value.buffer).setUint32(0, policyWords({ ipv4: ADDR }).ipv4![0]!, true);
  mapUpdate(mapFd, key, value);
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

export const CASES = ["none", "constants", "map"] as const;
export type HookCase = (typeof CASES)[number];

/** ns per operation, one figure per round: the fastest batch of that round. */
export type BpfHookSamples = Record<HookCase, { bind: number[]; connect: number[] }>;

export interface BpfHookOptions {
  rounds: number;
  batches: number;
  calls: number;
}

function sh(script: string): void {
  const r = spawnSync("sh", ["-c", script], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${script}: ${r.stderr}`);
}

/**
 * Needs a throwaway network namespace (it adds a device with two addresses). `parent` must not exist yet; it is
 * created and removed again.
 */
export function measureBpfHooks(parent: string, opts: BpfHookOptions): BpfHookSamples {
  sh(
    `ip link add ${DEVICE} type bridge && ip link set ${DEVICE} up && ip addr add ${PEER}/24 dev ${DEVICE} && ip addr add ${ADDR}/24 dev ${DEVICE}`,
  );
  const original = readFileSync("/proc/self/cgroup", "utf8").match(/^0::(.*)$/m)?.[1] ?? "/";
  const enter = (cg: string) => writeFileSync(join(cg, "cgroup.procs"), String(process.pid));
  const samples: BpfHookSamples = {
    none: { bind: [], connect: [] },
    constants: { bind: [], connect: [] },
    map: { bind: [], connect: [] },
  };
  createCgroup(parent);
  try {
    for (const c of CASES) {
      const cg = join(parent, c);
      createCgroup(cg);
      if (c === "constants") attachSocketPolicy(cg, { ipv4: ADDR });
      if (c === "map") {
        const fd = mapBindProgram(cg);
        withFd(openCgroup(cg), (cgFd) => attachProgram(cgFd, fd, "CGROUP_INET4_BIND"));
        closeFd(fd);
      }
    }
    // Batches of the cases alternate (in both orders), and a round keeps each case's fastest batch: on a shared
    // machine a batch that another process preempted is slower by far more than the hooks cost.
    for (let round = 0; round < opts.rounds; round++) {
      const best = Object.fromEntries(CASES.map((c) => [c, { bind: Infinity, connect: Infinity }]));
      for (let b = 0; b < opts.batches; b++) {
        for (const c of b % 2 ? [...CASES].reverse() : CASES) {
          enter(join(parent, c));
          batchMean(bindClose, 50);
          batchMean(connectClose, 50);
          best[c]!.bind = Math.min(best[c]!.bind, batchMean(bindClose, opts.calls));
          best[c]!.connect = Math.min(best[c]!.connect, batchMean(connectClose, opts.calls));
        }
      }
      for (const c of CASES) {
        samples[c].bind.push(best[c]!.bind);
        samples[c].connect.push(best[c]!.connect);
      }
    }
  } finally {
    enter(join(cgroup2Root(), original));
    for (const c of CASES) removeCgroup(join(parent, c));
    removeCgroup(parent);
    sh(`ip link del ${DEVICE}`);
  }
  return samples;
}

function isMain(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
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
  const opts: BpfHookOptions = {
    rounds: Number(process.argv[2] ?? 15),
    batches: Number(process.argv[3] ?? 8),
    calls: Number(process.argv[4] ?? 500),
  };
  const t0 = Date.now();
  const samples = measureBpfHooks(join(cgroup2Root(), `netctx-bench-bpf-${process.pid}`), opts);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const none = { bind: median(samples.none.bind), connect: median(samples.none.connect) };
  console.log(
    `ns per operation, median over ${opts.rounds} rounds of the fastest of ${opts.batches} batches of ${opts.calls} calls (map: bind4 only, connect unhooked); ${Date.now() - t0} ms`,
  );
  for (const c of CASES) {
    const r = { bind: median(samples[c].bind), connect: median(samples[c].connect) };
    const d = (v: number, base: number) => (c === "none" ? "" : ` (+${(v - base).toFixed(0)})`);
    console.log(
      `${c.padEnd(10)} socket+bind+close ${r.bind.toFixed(0)}${d(r.bind, none.bind)}   socket+connect+close ${r.connect.toFixed(0)}${d(r.connect, none.connect)}`,
    );
  }
}
