/** Run the real `bin/netctx` as a user would, inside the test file's sandbox. */
import { type ChildProcess, type SpawnSyncReturns, spawn, spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { type CliResult, runAsync } from "../../bench/cluster-hosts.ts";
import { ensurePrivateTmp } from "../../src/state/private-tmp.ts";
import { waitFor } from "./wait.ts";

export const NETCTX = join(import.meta.dirname, "..", "..", "bin", "netctx");

export type { CliResult };

/**
 * The mount view a bare netctx-enter gets in a test, as `netctx exec` would give it: a private /tmp under the
 * test's scratch, and the repository in view (NETCTX_EXEC_RO, test/run.ts) should it lie under the host's /tmp.
 */
export function bareView(): { tmp: string; readOnly: string[] } {
  return {
    tmp: ensurePrivateTmp(process.env.NETCTX_TEST_SCRATCH ?? tmpdir(), "bare-enter"),
    readOnly: process.env.NETCTX_EXEC_RO?.split(":").filter(Boolean) ?? [],
  };
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

/** `netctx ARGS` without blocking the event loop (a test that must go on meanwhile, or several at once). */
export function netctxAsync(...args: string[]): Promise<CliResult> {
  return runAsync([NETCTX, ...args], process.env);
}

/** Start several netctx processes at the same instant. */
export function netctxParallel(argvs: string[][]): Promise<CliResult[]> {
  return Promise.all(argvs.map((args) => netctxAsync(...args)));
}

/** Every context and network as the CLI lists them, for "nothing changed" comparisons. */
export function netctxState(): string {
  return netctxOk("ls", "--json") + netctxOk("network", "ls", "--json");
}

/**
 * Run a shell script in a context through `netctx exec`; resolves with its output and exit code. With `onLine`,
 * every stdout line is handed over with the script's stdin (left open for it to answer); without, stdin is closed.
 */
export function execScript(
  context: string,
  script: string,
  onLine?: (line: string, stdin: NodeJS.WritableStream) => void,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(NETCTX, ["exec", context, "--", "sh", "-c", script], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  createInterface({ input: child.stdout }).on("line", (line) => {
    stdout += `${line}\n`;
    onLine?.(line, child.stdin);
  });
  if (!onLine) child.stdin.end();
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

export interface RunningEngine {
  child: ChildProcess;
  /** Its stdout so far: "serving on ..." and a line a request. */
  log(): string;
  /** Send `signal` (SIGTERM unless told) and wait for the exit (nothing when it has ended already). */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * `netctx serve` on the test's state dir, once it says it is serving (or has ended, or 15 s passed: a caller that
 * must know asserts on its log). `env` is added to the test's environment; `onStderr` gets its stderr, which is
 * otherwise the test's own.
 */
export async function startEngine(
  opts: { env?: Record<string, string>; onStderr?: (chunk: string) => void; args?: string[] } = {},
): Promise<RunningEngine> {
  const child = spawn(NETCTX, ["serve", ...(opts.args ?? [])], {
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", opts.onStderr ? "pipe" : "inherit"],
  });
  let log = "";
  child.stdout!.on("data", (d) => {
    log += d;
  });
  child.stderr?.on("data", (d: Buffer) => opts.onStderr?.(d.toString()));
  const ended = () => child.exitCode !== null || child.signalCode !== null;
  await waitFor(() => log.includes("serving on") || ended(), 15_000);
  const stop = (signal: NodeJS.Signals = "SIGTERM") =>
    new Promise<void>((resolve) => {
      if (ended()) return resolve();
      child.once("exit", () => resolve());
      child.kill(signal);
    });
  return { child, log: () => log, stop };
}
