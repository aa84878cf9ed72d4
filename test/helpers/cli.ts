/** Run the real `bin/netctx` as a user would, inside the test file's sandbox. */
import { type ChildProcess, type SpawnSyncReturns, spawn, spawnSync } from "node:child_process";
import { join } from "node:path";

export const NETCTX = join(import.meta.dirname, "..", "..", "bin", "netctx");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function result(r: SpawnSyncReturns<string>): CliResult {
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function netctx(...args: string[]): CliResult {
  return result(spawnSync(NETCTX, args, { encoding: "utf8", timeout: 60_000 }));
}

/** Run and insist on success; returns stdout. */
export function netctxOk(...args: string[]): string {
  const r = netctx(...args);
  if (r.code !== 0) throw new Error(`netctx ${args.join(" ")} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

export function netctxJson<T = unknown>(...args: string[]): T {
  return JSON.parse(netctxOk(...args, "--json")) as T;
}

/** Start several netctx processes at the same instant. */
export function netctxParallel(argvs: string[][]): Promise<CliResult[]> {
  return Promise.all(
    argvs.map(
      (args) =>
        new Promise<CliResult>((resolve) => {
          const child = spawn(NETCTX, args, { stdio: ["ignore", "pipe", "pipe"] });
          let stdout = "";
          let stderr = "";
          child.stdout.on("data", (d) => {
            stdout += d;
          });
          child.stderr.on("data", (d) => {
            stderr += d;
          });
          child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
        }),
    ),
  );
}

export interface RunningEngine {
  child: ChildProcess;
  /** SIGTERM and wait for the exit (nothing when it has ended already). */
  stop(): Promise<void>;
}

/** `netctx serve` on the test's state dir, once it says it is serving. */
export async function startEngine(): Promise<RunningEngine> {
  const child = spawn(NETCTX, ["serve"], { stdio: ["ignore", "pipe", "inherit"] });
  let log = "";
  child.stdout!.on("data", (d) => {
    log += d;
  });
  await new Promise<void>((resolve) => {
    const wait = () => (log.includes("serving on") ? resolve() : setTimeout(wait, 20));
    wait();
  });
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", () => resolve());
      child.kill("SIGTERM");
    });
  return { child, stop };
}
