/** Shared pieces of the level tests: probes run through `netctx exec` (or plainly), and upstream namespaces. */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { NETCTX } from "../helpers/cli.ts";

export const PROBE = join(import.meta.dirname, "probe.mjs");

export type ProbeOp =
  | { op: "bind"; host: string; port?: number }
  | { op: "tcp"; host: string; port: number }
  | { op: "udp"; host: string; port: number }
  | { op: "raw"; family?: 4 | 6 }
  | { op: "packet" }
  | { op: "listen-nobind" }
  | { op: "mark" }
  | { op: "wait" };

export interface ProbeResult {
  ok: boolean;
  code?: string;
  address?: string;
  port?: number;
  data?: string;
  value?: number;
}

export interface RunningProbe {
  next(): Promise<ProbeResult>;
  /** Close stdin (ends a `wait`) and wait for the exit. */
  stop(): Promise<number | null>;
}

function probeArgv(context: string | undefined, ops: ProbeOp[]): string[] {
  const argv = [process.execPath, PROBE, JSON.stringify(ops)];
  return context === undefined ? argv : [NETCTX, "exec", context, "--", ...argv];
}

/** A probe in a context (through `netctx exec`, so through confinedArgv) or, without one, plainly outside. */
export function startProbe(context: string | undefined, ops: ProbeOp[]): RunningProbe {
  const argv = probeArgv(context, ops);
  const child: ChildProcessWithoutNullStreams = spawn(argv[0]!, argv.slice(1), {
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return {
    async next() {
      const r = await lines.next();
      if (r.done) throw new Error(`probe ended early: ${stderr}`);
      return JSON.parse(r.value) as ProbeResult;
    },
    stop() {
      child.stdin.end();
      return exited;
    },
  };
}

export async function probe(context: string | undefined, ops: ProbeOp[]): Promise<ProbeResult[]> {
  const p = startProbe(context, ops);
  const out: ProbeResult[] = [];
  for (let i = 0; i < ops.length; i++) out.push(await p.next());
  await p.stop();
  return out;
}

/** Run a shell script through `netctx exec`; resolves with its stdout and exit code. */
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

export function sh(script: string): string {
  return execFileSync("sh", ["-c", script], { encoding: "utf8" });
}

/**
 * An "upstream" router: a namespace hanging off the host network's bridge by a veth, with an address in the host
 * subnet and the far addresses on its lo, answering TCP on them with its name and the source it saw.
 */
export interface Upstream {
  name: string;
  stop(): void;
}

export async function startUpstream(opts: {
  name: string;
  bridge: string;
  addresses: string[];
  far: string[];
  port: number;
}): Promise<Upstream> {
  const { name, bridge } = opts;
  sh(
    [
      `ip netns add ${name}`,
      `ip link add ${name}-h type veth peer name eth0 netns ${name}`,
      `ip link set ${name}-h master ${bridge} up`,
      `ip -n ${name} link set lo up`,
      `ip -n ${name} link set eth0 up`,
      ...opts.addresses.map((a) => `ip -n ${name} addr add ${a} dev eth0${a.includes(":") ? " nodad" : ""}`),
      ...opts.far.map((a) => `ip -n ${name} addr add ${a} dev lo`),
    ].join(" && "),
  );
  const listen = opts.far.map((a) => a.split("/")[0]!);
  const server = spawn(
    "ip",
    [
      "netns",
      "exec",
      name,
      process.execPath,
      "-e",
      `const net=require("net");let up=0;for(const h of ${JSON.stringify(listen)})` +
        `net.createServer(c=>c.end("${name} "+c.remoteAddress+"\\n")).listen(${opts.port},h,()=>{if(++up===${listen.length})console.log("up")})`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await new Promise<void>((resolve, reject) => {
    server.stdout.once("data", () => resolve());
    server.once("exit", (code) => reject(new Error(`upstream ${name} server exited ${code}`)));
  });
  return {
    name,
    stop() {
      server.kill();
      sh(`ip link del ${name}-h; ip netns del ${name}`);
    },
  };
}
