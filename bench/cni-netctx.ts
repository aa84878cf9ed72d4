/**
 * netctx's own front ends for the l2 walk: the CLI (one process per operation) and the CNI plugin exec'd the way a
 * runtime does, each with the resident engine (`netctx serve`) answering or doing the work itself.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { cniPath } from "./cni-peer.ts";
import type { Path } from "./population.ts";
import { nowMs, sleep } from "./stats.ts";

export const NETCTX_BIN = join(import.meta.dirname, "..", "bin", "netctx");
/** Pointing NETCTX_SOCKET here makes the CLI and the CNI launcher find no engine and do the work themselves. */
const NO_ENGINE = { NETCTX_SOCKET: "/nonexistent/netctx-bench.sock" };

export interface Engine {
  pid: number;
  stop(): Promise<void>;
}

export async function startEngine(stateDir: string, serveArgs: string[] = []): Promise<Engine> {
  const child: ChildProcess = spawn(NETCTX_BIN, ["serve", ...serveArgs], {
    env: { ...process.env, NETCTX_STATE_DIR: stateDir },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const socket = join(stateDir, "netctx.sock");
  const t0 = Date.now();
  while (!existsSync(socket)) {
    if (child.exitCode !== null) throw new Error(`netctx serve exited with ${child.exitCode}`);
    if (Date.now() - t0 > 30_000) {
      child.kill("SIGTERM");
      throw new Error("netctx serve did not open its socket within 30 s");
    }
    await sleep(20);
  }
  return {
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** Install the CNI launcher into pluginDir; it carries the state dir and the bench's cgroup parent. */
export function installCniPlugin(stateDir: string, pluginDir: string): void {
  const r = spawnSync(NETCTX_BIN, ["cni", "install", pluginDir], {
    env: { ...process.env, NETCTX_STATE_DIR: stateDir },
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`netctx cni install: ${r.stderr}`);
}

/**
 * The engine defers kernel cleanup until requests pause; a path that went through it settles it at the end of its
 * removals, so that time is charged to them (POST /v1/settle runs it at once).
 */
function settleEngine(stateDir: string): void {
  const r = spawnSync("curl", [
    "-sf",
    "-X",
    "POST",
    "--unix-socket",
    join(stateDir, "netctx.sock"),
    "http://netctx/v1/settle",
  ]);
  if (r.status !== 0) throw new Error(`engine settle failed (curl exit ${r.status})`);
}

/** The CNI plugin joining the existing network `network`; with engine=false it never reaches the engine. */
export function netctxCniPath(
  label: string,
  prefix: string,
  pluginDir: string,
  network: string,
  engine: boolean,
  stateDir: string,
): Path {
  const path = cniPath(
    label,
    prefix,
    { cniVersion: "1.0.0", name: `bench-${prefix}`, type: "netctx", network },
    pluginDir,
    engine ? {} : NO_ENGINE,
  );
  return engine ? { ...path, settle: () => settleEngine(stateDir) } : path;
}

/** `netctx create NAME --level l2 --network NET` and `netctx rm NAME`, one process each. */
export function cliPath(
  label: string,
  prefix: string,
  stateDir: string,
  network: string,
  engine: boolean,
): Path {
  const env = { ...process.env, NETCTX_STATE_DIR: stateDir, ...(engine ? {} : NO_ENGINE) };
  const run = (...args: string[]) => {
    const r = spawnSync(NETCTX_BIN, args, { env, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`netctx ${args.join(" ")}: ${r.stderr}`);
  };
  return {
    label,
    add: (i) => run("create", `${prefix}${i}`, "--level", "l2", "--network", network),
    remove: (i) => run("rm", `${prefix}${i}`),
    ...(engine ? { settle: () => settleEngine(stateDir) } : {}),
  };
}

/**
 * One request to the engine's API from here (what the CLI sends), resolving with its wall time in ms; a status of
 * 300 or more, or a reply that reports an error (an apply's), rejects.
 */
export function engineCall(stateDir: string, method: string, path: string, body?: unknown): Promise<number> {
  const payload = body === undefined ? "" : JSON.stringify(body);
  const headers = { "content-type": "application/json", "content-length": Buffer.byteLength(payload) };
  const t = nowMs();
  return new Promise((resolve, reject) => {
    // agent: false, a connection of its own as the CLI has: a kept-alive one the engine closed meanwhile (the CLI
    // calls in between take seconds) fails the next request with EPIPE.
    const target = { socketPath: join(stateDir, "netctx.sock"), method, path, headers, agent: false };
    const req = request(target, (res) => {
      let text = "";
      res.on("data", (chunk) => {
        text += chunk;
      });
      res.on("end", () => {
        const failed = (res.statusCode ?? 500) >= 300 || /"error"/.test(text);
        if (failed) reject(new Error(`${method} ${path}: ${res.statusCode} ${text.slice(0, 300)}`));
        else resolve(nowMs() - t);
      });
    });
    req.on("error", reject);
    req.end(payload);
  });
}
