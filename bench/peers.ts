/**
 * The peers of the l2 table, each walked in a throwaway namespace of its own (bench/peer-cell.ts). A peer that is
 * not installed is reported as missing, never replaced by a figure from elsewhere.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sandboxArgv } from "../src/sandbox.ts";
import { cniAvailable } from "./cni-peer.ts";
import { type KernelReading, settleNetns } from "./memory.ts";
import { netavarkAvailable } from "./netavark.ts";
import type { Measured, WalkResult } from "./population.ts";

export const PEERS = {
  "bridge-masq": {
    label: "CNI bridge + ipMasq",
    available: () => cniAvailable("bridge") && cniAvailable("host-local"),
    install: "apt-get install containernetworking-plugins",
  },
  "bridge-nomasq": {
    label: "CNI bridge, no masq",
    available: () => cniAvailable("bridge") && cniAvailable("host-local"),
    install: "apt-get install containernetworking-plugins",
  },
  "ptp-masq": {
    label: "CNI ptp + ipMasq",
    available: () => cniAvailable("ptp") && cniAvailable("host-local"),
    install: "apt-get install containernetworking-plugins",
  },
  netavark: {
    label: "netavark",
    available: netavarkAvailable,
    install: "apt-get install netavark",
  },
} as const;
export type PeerId = keyof typeof PEERS;

export interface PeerCellSpec {
  peer: PeerId;
  ns: number[];
  k: number;
  workDir: string;
}

export interface PeerCellOutput {
  walk: WalkResult;
  kernel: KernelReading;
  iptablesRulesAtN?: number;
}

export type PeerOutcome =
  | ({ kind: "measured"; id: PeerId } & PeerCellOutput)
  | { kind: "partial"; id: PeerId; rows: Measured[]; why: string }
  | { kind: "missing"; id: PeerId; why: string };

const CELL = join(import.meta.dirname, "peer-cell.ts");

export async function runPeer(
  id: PeerId,
  ns: number[],
  k: number,
  timeoutMs: number,
  log: (line: string) => void,
): Promise<PeerOutcome> {
  const peer = PEERS[id];
  if (!peer.available())
    return { kind: "missing", id, why: `not installed (${peer.install}, or ../shared/peers/setup.sh)` };
  const workDir = mkdtempSync(join(tmpdir(), "netctx-bench-peer-"));
  const spec: PeerCellSpec = { peer: id, ns, k, workDir };
  const argv = sandboxArgv([process.execPath, ...process.execArgv, CELL, JSON.stringify(spec)]);
  try {
    const { code, stdout, timedOut } = await new Promise<{
      code: number | null;
      stdout: string;
      timedOut: boolean;
    }>((resolve) => {
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      let timedOut = false;
      child.stdout.setEncoding("utf8").on("data", (d: string) => {
        out += d;
      });
      child.stderr.setEncoding("utf8").on("data", (d: string) => {
        err += d;
        const lines = err.split("\n");
        err = lines.pop() ?? "";
        for (const line of lines) log(line);
      });
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill("SIGTERM");
      }, timeoutMs);
      child.on("close", (c) => {
        clearTimeout(timer);
        if (err) log(err);
        resolve({ code: c, stdout: out, timedOut });
      });
    });
    const lines = stdout.split("\n");
    const done = lines.find((l) => l.startsWith("done "));
    if (done) return { kind: "measured", id, ...(JSON.parse(done.slice(5)) as PeerCellOutput) };
    // Stopped part-way: the rows measured so far still stand; the rest is reported as not measured.
    const rows = lines.filter((l) => l.startsWith("row ")).map((l) => JSON.parse(l.slice(4)) as Measured);
    const why = timedOut
      ? `stopped by the ${Math.round(timeoutMs / 1000)} s time box`
      : `cell exited with ${code}`;
    return { kind: "partial", id, rows, why };
  } finally {
    rmSync(workDir, { recursive: true, force: true });
    // The dropped namespace's contexts are torn down by a kernel worker: let it finish before the next figure.
    await settleNetns();
  }
}
