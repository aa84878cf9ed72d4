/**
 * The one socket probe (socket-probe.mjs) and its runner: a list of operations run where the test says (in a
 * context through `netctx exec`, straight in a cgroup, in a netns, or plainly in the test's namespace), one result
 * each. It also serves: `serve` and `sink` followed by `wait` are the servers the traffic tests talk to.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { inCgroupArgv } from "./cgroup.ts";
import { NETCTX } from "./cli.ts";
import { type LineProcess, startLines } from "./line-process.ts";
import { inNetns } from "./netns.ts";

export const SOCKET_PROBE = join(import.meta.dirname, "socket-probe.mjs");

export type ProbeOp =
  /** A TCP listener on host (IPv6 only on a v6 address) answering each connection with the peer's address. */
  | { op: "bind"; host: string; port?: number }
  /** Connect, half-close, read the answer (data) to its end; address and port are the local end. */
  | { op: "tcp"; host: string; port: number; timeoutMs?: number }
  /** One datagram; with reply, the answer within 2 s is data and its source (as recvfrom shows it) from. */
  | { op: "udp"; host: string; port: number; connect?: boolean; reply?: boolean }
  | { op: "raw"; family?: 4 | 6 }
  | { op: "ping-socket" }
  | { op: "packet" }
  /** The socket mark a new socket gets (value). */
  | { op: "mark" }
  /** listen() on a socket that never called bind(): the port it got. */
  | { op: "listen-nobind" }
  /** /proc/self/cgroup (value). */
  | { op: "cgroup" }
  /** The ops run by a child process of the probe (children). */
  | { op: "child"; ops: ProbeOp[] }
  /** Answer each connection or datagram with `answer` and the peer's address, on hosts (default: any). */
  | { op: "serve"; proto: "tcp" | "udp"; port: number; hosts?: string[]; answer?: string }
  /** A TCP server (on host, default [::]) that reads everything and closes when its peer is done. */
  | { op: "sink"; port: number; host?: string }
  /** Send bytes over TCP; value is the seconds until the peer closed. */
  | { op: "send"; host: string; port: number; bytes: number }
  /** Until stdin closes: what the probe opened stays open. */
  | { op: "wait" };

export interface ProbeResult {
  ok: boolean;
  code?: string;
  address?: string;
  port?: number;
  data?: string;
  /** udp with reply: where the answer came from. */
  from?: string;
  value?: string | number;
  children?: ProbeResult[];
}

/** Where a probe runs: in a context (`netctx exec`, its whole confinement), or in a cgroup and/or a netns. */
export type ProbePlace = { context: string } | { cgroup?: string | undefined; netns?: string | undefined };

export function probeArgv(ops: ProbeOp[], at?: ProbePlace): string[] {
  const argv = [process.execPath, SOCKET_PROBE, JSON.stringify(ops)];
  if (!at) return argv;
  if ("context" in at) return [NETCTX, "exec", at.context, "--", ...argv];
  return inCgroupArgv(at.cgroup, inNetns(at.netns, argv));
}

export interface RunningProbe {
  child: LineProcess["child"];
  /** The next op's result. */
  next(): Promise<ProbeResult>;
  /** Close stdin (ends a `wait`) and wait for the exit; resolves the exit code. */
  stop(): Promise<number | null>;
}

/** Start a probe argv (probeArgv's, or one wrapped further) and read its results as they come. */
export function startProbe(argv: string[]): RunningProbe {
  const p = startLines(argv);
  return {
    child: p.child,
    next: async () => JSON.parse(await p.next()) as ProbeResult,
    stop: () => p.stop(),
  };
}

/** Run ops to completion and return one result per op. */
export async function probe(at: ProbePlace | undefined, ops: ProbeOp[]): Promise<ProbeResult[]> {
  const p = startProbe(probeArgv(ops, at));
  const out: ProbeResult[] = [];
  for (let i = 0; i < ops.length; i++) out.push(await p.next());
  await p.stop();
  return out;
}

/** The same without the event loop (spawnSync), for synchronous tests; status is the probe's exit. */
export function probeSync(
  at: ProbePlace | undefined,
  ops: ProbeOp[],
): { status: number | null; stderr: string; results: ProbeResult[] } {
  const argv = probeArgv(ops, at);
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: 30_000 });
  const results = (r.stdout ?? "")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ProbeResult);
  return { status: r.status, stderr: r.stderr, results };
}

/** A probe serving (`serve` or `sink`) until stopped or killed; resolves once it listens. */
export async function startServing(
  op: Extract<ProbeOp, { op: "serve" | "sink" }>,
  at?: ProbePlace,
): Promise<RunningProbe> {
  const p = startProbe(probeArgv([op, { op: "wait" }], at));
  const ready = await p.next();
  if (!ready.ok) {
    p.child.kill();
    throw new Error(`${JSON.stringify(op)}: ${ready.code}`);
  }
  return p;
}
