/** Shared set-up for the BPF tests: the host bridge with the two contexts' addresses, and probe runners. */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { ProbeOp, ProbeResult } from "./probe.ts";

export const A4 = "10.99.0.2";
export const B4 = "10.99.0.3";
export const HOST4 = "10.99.0.1";
export const A6 = "fd99::2";
export const B6 = "fd99::3";
export const HOST6 = "fd99::1";
/** Last octet >= 128: as a little-endian u32 its sign bit is set, the case a 64-bit compare gets wrong. */
export const C4 = "10.99.0.200";
export const C6 = "fd99::c8";

/** A port-less bridge serves as the host device of a `host` network. */
export function setUpHostBridge(): void {
  execFileSync("ip", ["link", "add", "nchost0", "type", "bridge"]);
  // ICMP datagram ("ping") sockets are refused by their group check (EACCES) before the creation hook runs;
  // open them to everybody in this namespace so the hook is what refuses them.
  execFileSync("sysctl", ["-qw", "net.ipv4.ping_group_range=0 2147483647"]);
  execFileSync("ip", ["link", "set", "nchost0", "up"]);
  for (const a of [HOST4, A4, B4, C4]) execFileSync("ip", ["addr", "add", `${a}/24`, "dev", "nchost0"]);
  for (const a of [HOST6, A6, B6, C6])
    execFileSync("ip", ["addr", "add", `${a}/64`, "dev", "nchost0", "nodad"]);
}

const PROBE = join(import.meta.dirname, "probe.ts");

export function probeArgv(ops: ProbeOp[]): string[] {
  return [process.execPath, "--import", "tsx", PROBE, JSON.stringify(ops)];
}

/** argv that moves the shell into the cgroup before exec'ing the command, so nothing starts outside it. */
export function inCgroupArgv(cgroup: string | undefined, argv: string[]): string[] {
  if (!cgroup) return argv;
  return ["sh", "-c", 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', "sh", cgroup, ...argv];
}

export interface RunningProbe {
  child: ChildProcessWithoutNullStreams;
  next(): Promise<ProbeResult>;
  /** Close stdin (ends a `wait`) and collect the exit. */
  stop(): Promise<void>;
}

export function startProbe(argv: string[]): RunningProbe {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
  return {
    child,
    async next() {
      const r = await lines.next();
      if (r.done) throw new Error(`probe ended early: ${stderr}`);
      return JSON.parse(r.value) as ProbeResult;
    },
    async stop() {
      child.stdin.end();
      await exited;
    },
  };
}

/** Run ops to completion and return one result per op. */
export async function probe(cgroup: string | undefined, ops: ProbeOp[]): Promise<ProbeResult[]> {
  const p = startProbe(inCgroupArgv(cgroup, probeArgv(ops)));
  const out: ProbeResult[] = [];
  for (let i = 0; i < ops.length; i++) out.push(await p.next());
  await p.stop();
  return out;
}
