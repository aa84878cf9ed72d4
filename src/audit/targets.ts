/**
 * What the escape probes aim at, and how the auditor proves each target was there: the markers inside the contexts
 * and a helper per audited context on the host (both run the probe program, found again from the host by a token
 * in their command line), TCP listeners on host addresses, and the engine's API socket.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { request } from "node:http";
import { createServer, type Server } from "node:net";
import { type ProbeMode, PYTHON_FLAGS, pythonArgv } from "./probe-script.ts";
import { type ExecArgv, LineChild, spawnInContext } from "./run.ts";
import type { Subject } from "./subjects.ts";

/** A marker: a process inside a context holding a TCP listener (fd `fd`) and an abstract unix socket. */
export interface Marker {
  child: LineChild;
  port: number;
  fd: number;
  token: string;
  abstract: string;
  /** The abstract listener's connect to itself: "ok" or the errno. */
  abstractCheck: string;
  /** Its pid in the host's PID namespace, found by its token. */
  hostPid?: number;
}

/** The host's stand-in for one audited context: a process outside every context. */
export interface HostHelper {
  child: LineChild;
  pid: number;
  token: string;
  abstract: string;
  abstractCheck: string;
}

/** What a marker or helper saw, asked after the probes: every line a unix connection carried, SIGWINCHs. */
export interface TargetReport {
  accepted: string[];
  listening: boolean;
  signals?: number;
}

/** Unique per audit run, so an abstract name or token can never be an earlier run's leftover. */
export function newRunId(): string {
  return `${process.pid.toString(36)}${randomBytes(3).toString("hex")}`;
}

export async function startHostHelper(token: string): Promise<HostHelper> {
  const argv = pythonArgv("host", { token, abstract: token });
  const child = new LineChild(`host helper ${token}`, spawn(argv[0]!, argv.slice(1), { stdio: "pipe" }));
  const first = await child.json<{ pid: number; abstract: string | null }>();
  return { child, pid: first.pid, token, abstract: token, abstractCheck: first.abstract ?? "no listener" };
}

/** Ask a marker or helper what it saw; undefined when it no longer answers (so it cannot vouch for anything). */
export async function askReport(child: LineChild): Promise<TargetReport | undefined> {
  try {
    child.send("report");
    return await child.json<TargetReport>();
  } catch {
    return undefined;
  }
}

function argvOf(pid: string): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return undefined;
  }
}

function runsProbe(argv: string[], mode: ProbeMode, token: string): boolean {
  const k = PYTHON_FLAGS.length + 1;
  return (
    PYTHON_FLAGS.every((f, i) => argv[i + 1] === f) && argv[k] === mode && (argv[k + 1] ?? "").includes(token)
  );
}

/**
 * Host pids of the processes running the probe program in `mode` with `token` in their parameters. A sandbox may
 * put wrappers around them (an init of a PID namespace) whose argv ends the same way; the interpreter's flags and
 * the exact program text right after argv[0] tell the program itself apart.
 */
export function hostPidsOf(mode: ProbeMode, tokens: string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const argv = argvOf(pid);
    if (!argv) continue;
    const token = tokens.find((t) => runsProbe(argv, mode, t));
    if (token !== undefined && !out.has(token)) out.set(token, Number(pid));
  }
  return out;
}

/** The process is still there and still the one the token named. */
export function stillRuns(pid: number, mode: ProbeMode, token: string): boolean {
  const argv = argvOf(String(pid));
  return argv !== undefined && runsProbe(argv, mode, token);
}

export async function listenTcp(addr = "127.0.0.1"): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createServer((c) => c.destroy());
    server.on("error", reject);
    server.listen(0, addr, () => {
      const a = server.address();
      resolve({ server, port: typeof a === "object" && a ? a.port : 0 });
    });
  });
}

/** The engine's pid when `netctx serve` answers on its socket, else undefined (then the engine-api probe is skipped). */
export function engineHealth(socketPath: string, timeoutMs = 1000): Promise<number | undefined> {
  if (!existsSync(socketPath)) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const req = request({ socketPath, path: "/v1/health", method: "GET", timeout: timeoutMs }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => {
        try {
          const pid = (JSON.parse(body) as { pid?: unknown }).pid;
          resolve(res.statusCode === 200 && typeof pid === "number" ? pid : undefined);
        } catch {
          resolve(undefined);
        }
      });
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
    req.end();
  });
}

/**
 * One marker per context, each on a port number no other marker (nor the host's services) holds. A probe binds the
 * second context's marker port in its own stack and reads EADDRINUSE as a shared port space; the kernel hands out
 * the same number for two different addresses (or two namespaces), and a probe whose own marker sat on that
 * number would be refused by its own listener. Such a marker is replaced: the new one is started while the old
 * one still holds the port, so the kernel cannot pick the same number again. Each marker gets a token of its own
 * (its abstract socket's name too), by which the auditor then finds its pid in the host's PID namespace.
 */
export async function startMarkers(
  exec: ExecArgv,
  subjects: Subject[],
  reserved: number[],
  runId: string,
  children: LineChild[],
): Promise<Map<string, Marker>> {
  let spawned = 0;
  const start = async (s: Subject): Promise<Marker> => {
    const token = `netctx-audit-${runId}-m${spawned++}-${s.name}`;
    const child = spawnInContext(exec, s.record, "marker", { token, abstract: token });
    children.push(child);
    const first = await child.json<{ port: number; fd: number; abstract: string | null }>();
    return {
      child,
      port: first.port,
      fd: first.fd,
      token,
      abstract: token,
      abstractCheck: first.abstract ?? "no listener",
    };
  };
  const started = await Promise.all(subjects.map(start));
  const markers = new Map<string, Marker>();
  const taken = new Set(reserved);
  for (const [i, s] of subjects.entries()) {
    let m = started[i]!;
    for (let attempt = 0; taken.has(m.port) && attempt < 8; attempt++) {
      const old = m;
      m = await start(s);
      await old.child.end();
    }
    taken.add(m.port);
    markers.set(s.name, m);
  }
  const pids = hostPidsOf(
    "marker",
    [...markers.values()].map((m) => m.token),
  );
  for (const m of markers.values()) {
    const pid = pids.get(m.token);
    if (pid !== undefined) m.hostPid = pid;
  }
  return markers;
}
