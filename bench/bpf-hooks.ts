/**
 * Cost of the socket-policy hooks: ns per socket()+bind()+close() and per socket()+connect()+close() (UDP,
 * so no handshake) with no programs, with the per-context programs (constants), and with a shared-style
 * bind4 program that looks the address up in a hash map keyed by cgroup id.
 * bench/run.ts calls measureBpfHooks(); standalone:
 *   node --import tsx bench/bpf-hooks.ts [cycles] [calls per batch]
 * which runs itself inside a throwaway network namespace. The cgroups live under the given parent (standalone:
 * netctx-bench-bpf-<pid>) and are removed. The timed loop is bench/bpf-hooks-loop.c, built with cc at each run: one
 * process per case, each inside its case's cgroup; this process stays where it is.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Helper, ProgType, SockAddr } from "../src/kernel/bpf/abi.ts";
import { Asm, FP, R0, R1, R2, R3, R6 } from "../src/kernel/bpf/asm.ts";
import { attachProgram, loadProgram, openCgroup, withFd } from "../src/kernel/bpf/attach.ts";
import { createHashMap, mapUpdate } from "../src/kernel/bpf/maps.ts";
import { attachSocketPolicy, policyWords } from "../src/kernel/bpf/socket-policy.ts";
import { closeFd } from "../src/kernel/bpf/syscall.ts";
import { cgroup2Root, cgroupId, createCgroup, removeCgroup } from "../src/kernel/cgroup.ts";
import { insideSandbox, sandboxArgv } from "../src/sandbox.ts";
import { type Stats, stats } from "./stats.ts";

const ADDR = "10.99.0.2";
const PEER = "10.99.0.1";
const DEVICE = "ncbpfbench0";
const LOOP_SOURCE = fileURLToPath(new URL("./bpf-hooks-loop.c", import.meta.url));

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
    .call(Helper.get_current_cgroup_id)
    .stx("dw", FP, -8, R0)
    .ldMapFd(R1, mapFd)
    .mov64Reg(R2, FP)
    .alu64Imm("add", R2, -8)
    .call(Helper.map_lookup_elem)
    .jmpImm("eq", R0, 0, "deny")
    .ldx("w", R2, R0, 0)
    .ldx("w", R3, R6, SockAddr.userIp4)
    .jmp32Reg("eq", R3, R2, "allow")
    .jmp32Imm("ne", R3, 0, "deny")
    .stx("w", R6, SockAddr.userIp4, R2)
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

/** Mean ns per call of one batch, by cycle: index i of every case comes from the same cycle, moments apart. */
export type BpfHookSamples = Record<HookCase, { bind: number[]; connect: number[] }>;

/** ns a case adds per call over no programs, paired by cycle. */
export function addedPerCall(samples: BpfHookSamples, c: HookCase, op: "bind" | "connect"): Stats {
  return stats(samples[c][op].map((v, i) => v - samples.none[op][i]!));
}

export interface BpfHookOptions {
  cycles: number;
  /** Timed calls per batch. */
  calls: number;
}

/** Builds the timed loop (bpf-hooks-loop.c) and runs it; its stdout is one line per cycle and case. */
function runLoop(opts: BpfHookOptions, parent: string): string {
  const dir = mkdtempSync(join(tmpdir(), "netctx-bench-bpf-"));
  try {
    const binary = join(dir, "bpf-hooks-loop");
    const cc = spawnSync("cc", ["-O2", "-Wall", "-o", binary, LOOP_SOURCE], { encoding: "utf8" });
    if (cc.error || cc.status !== 0)
      throw new Error(
        `cannot build bench/bpf-hooks-loop.c (cc, Debian package build-essential): ${cc.error?.message ?? cc.stderr.trim()}`,
      );
    const args = [opts.cycles, opts.calls, 0, PEER].map(String);
    const run = spawnSync(binary, [...args, ...CASES.map((c) => `${c}=${join(parent, c)}`)], {
      encoding: "utf8",
    });
    if (run.status !== 0) throw new Error(`bpf-hooks-loop: ${run.stderr.trim() || `exit ${run.status}`}`);
    return run.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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
    for (const line of runLoop(opts, parent).split("\n").filter(Boolean)) {
      const [, c, bind, connect] = line.split(" ") as [string, HookCase, string, string];
      samples[c].bind.push(Number(bind));
      samples[c].connect.push(Number(connect));
    }
  } finally {
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
  if (!insideSandbox(process.env)) {
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
    cycles: Number(process.argv[2] ?? 2000),
    calls: Number(process.argv[3] ?? 100),
  };
  const t0 = Date.now();
  const samples = measureBpfHooks(join(cgroup2Root(), `netctx-bench-bpf-${process.pid}`), opts);
  console.log(
    `ns per call, ${opts.cycles} cycles of a batch of ${opts.calls} calls per case (map: bind4 only, connect unhooked); ${Date.now() - t0} ms`,
  );
  for (const c of CASES) {
    const line = (["bind", "connect"] as const).map((op) => {
      const added = c === "none" ? "" : ` added ${addedPerCall(samples, c, op).median.toFixed(0)}`;
      return `${op} ${stats(samples[c][op]).median.toFixed(0)}${added}`;
    });
    console.log(`${c.padEnd(10)} ${line.join("   ")}`);
  }
}
