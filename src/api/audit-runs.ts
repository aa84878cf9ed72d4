/**
 * The dashboard's audit: `netctx audit --json` run on demand, one run at a time, its last answer kept until the next.
 * It takes seconds and blocks on probes (spawnSync with 5 s limits in audit/run.ts), so it runs as a child process:
 * the engine keeps answering meanwhile, and a probe that hangs cannot stall it.
 */
import { type ChildProcess, spawn } from "node:child_process";

export interface AuditRunView {
  state: "never" | "running" | "done" | "failed";
  startedAt?: string;
  finishedAt?: string;
  /** `netctx audit --json`'s report (it exits 2 when a context differs from its level: still a report). */
  report?: unknown;
  error?: string;
}

export class AuditRuns {
  private view: AuditRunView = { state: "never" };
  private child: ChildProcess | undefined;
  private last: Omit<AuditRunView, "state"> = {};

  /** `argv`: the audit command to run (serve builds it: this node, this state dir). */
  constructor(private readonly argv: readonly string[]) {}

  current(): AuditRunView {
    return this.view.state === "running" ? { ...this.last, ...this.view } : this.view;
  }

  /** End a run under way (the engine stops): its probes clean up after themselves on SIGTERM, as on a Ctrl-C. */
  stop(): void {
    this.child?.kill("SIGTERM");
  }

  /** Start a run unless one runs; the view says "running" at once (the last report stays beside it). */
  start(): AuditRunView {
    if (this.view.state === "running") return this.current();
    if (this.view.state === "done" || this.view.state === "failed") this.last = { ...this.view };
    const startedAt = new Date().toISOString();
    this.view = { state: "running", startedAt };
    const child = spawn(this.argv[0]!, this.argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d;
    });
    const finish = (code: number | null, spawnError?: Error) => {
      this.child = undefined;
      const finishedAt = new Date().toISOString();
      try {
        if (spawnError) throw spawnError;
        this.view = { state: "done", startedAt, finishedAt, report: JSON.parse(stdout) };
      } catch (err) {
        const why = stderr.trim().split("\n").pop() || (err as Error).message;
        this.view = { state: "failed", startedAt, finishedAt, error: `audit exited ${code}: ${why}` };
      }
    };
    child.on("error", (err) => finish(null, err));
    child.on("close", (code) => finish(code));
    return this.current();
  }
}
