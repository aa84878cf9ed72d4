/**
 * Running the in-context probes: one marker process and one probe process per context, all started through the
 * context's exec path (src/exec/enter.ts, as `netctx exec` does) and run in parallel.
 */
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from "node:child_process";
import { NetctxError } from "../errors.ts";
import { contextExecArgv } from "../exec/enter.ts";
import type { Host } from "../host.ts";
import type { ContextRecord } from "../model/records.ts";
import { pythonArgv } from "./probe-script.ts";

export const LINE_TIMEOUT_MS = 20_000;

/** A child that speaks one JSON line at a time on stdout. */
export class LineChild {
  private buffer = "";
  private lines: string[] = [];
  private waiters: ((line: string | null) => void)[] = [];
  private closed = false;
  private stderr = "";

  constructor(
    readonly what: string,
    readonly child: ChildProcessWithoutNullStreams,
  ) {
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (d: string) => {
      this.buffer += d;
      for (let i = this.buffer.indexOf("\n"); i >= 0; i = this.buffer.indexOf("\n")) {
        this.push(this.buffer.slice(0, i));
        this.buffer = this.buffer.slice(i + 1);
      }
    });
    child.stderr.on("data", (d) => {
      this.stderr += String(d);
    });
    child.on("close", () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w(null);
    });
    child.on("error", () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w(null);
    });
  }

  private push(line: string): void {
    const w = this.waiters.shift();
    if (w) w(line);
    else this.lines.push(line);
  }

  async json<T>(): Promise<T> {
    const line = await new Promise<string | null>((resolve) => {
      const queued = this.lines.shift();
      if (queued !== undefined) return resolve(queued);
      if (this.closed) return resolve(null);
      const timer = setTimeout(() => resolve(null), LINE_TIMEOUT_MS);
      this.waiters.push((l) => {
        clearTimeout(timer);
        resolve(l);
      });
    });
    if (line === null)
      throw new NetctxError(
        "internal",
        `audit: ${this.what} gave no answer: ${this.stderr.trim().split("\n").pop() ?? ""}`,
      );
    return JSON.parse(line) as T;
  }

  send(value: unknown): void {
    this.child.stdin.write(`${JSON.stringify(value)}\n`);
  }

  /** Close its stdin and wait for it to exit (killed after a second): a process left in a cgroup blocks rm. */
  async end(): Promise<void> {
    if (this.closed) return;
    const done = new Promise<void>((resolve) => this.child.once("close", () => resolve()));
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 1000);
    await done;
    clearTimeout(timer);
  }
}

/** argv that runs a command in a context. */
export type ExecArgv = (record: ContextRecord, command: string[]) => string[];

/** The context's exec sandbox, as `netctx exec` builds it. */
export function sandboxExec(host: Host): ExecArgv {
  return (record, command) => contextExecArgv(host, record, command);
}

export function spawnInContext(
  exec: ExecArgv,
  record: ContextRecord,
  mode: "marker" | "probe",
  params: unknown,
): LineChild {
  const argv = exec(record, pythonArgv(mode, params));
  return new LineChild(`${mode} in ${record.name}`, spawn(argv[0]!, argv.slice(1), { stdio: "pipe" }));
}

/** Forge the ICMP that teaches a PMTU exception, in the stack the context's flow lives in. */
export function forgeIcmp(
  netns: string | undefined,
  flow: { src: string; sport: number; dst: string; dport: number },
  mtu: number,
): Promise<string> {
  const py = pythonArgv("icmp", { ...flow, mtu });
  const argv = netns ? ["nsenter", `--net=${netns}`, "--", ...py] : py;
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => {
      out += String(d);
    });
    child.stderr.on("data", (d) => {
      out += String(d);
    });
    child.on("close", () => resolve(out.trim()));
    child.on("error", (e) => resolve(e.message));
  });
}

export interface CmdResult {
  cmd: string;
  rc: number;
  out: string;
}

export function runHost(argv: string[]): CmdResult {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: 5000 });
  return { cmd: argv.join(" "), rc: r.status ?? -1, out: `${r.stdout ?? ""}${r.stderr ?? ""}`.trim() };
}
