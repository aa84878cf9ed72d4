/**
 * One CNI invocation as a runtime makes it (through the launcher `netctx cni install` writes): CNI_* env plus a network
 * config on stdin in, a result or the spec's JSON error on stdout out, exit status 0 or 1.
 */
import { readFileSync } from "node:fs";
import type { Config } from "../config.ts";
import { Host } from "../host.ts";
import { BlockNeeded } from "../state/ipam.ts";
import { type CniError, errorJson, toCniError } from "./errors.ts";
import { formatResult } from "./result.ts";
import { type NetConf, parseConf, parseEnv, SUPPORTED_VERSIONS } from "./spec.ts";
import { cniAdd, cniCheck, cniDel, cniGc, cniStatus } from "./verbs.ts";

const DEFAULT_VERSION = "1.0.0";

export interface CniOutcome {
  code: number;
  stdout: string;
}

/**
 * Runs one CNI invocation; never throws. A resident engine passes its open host; the plugin's own process passes
 * its config, and a host is opened for the call.
 */
export function runCni(
  env: NodeJS.ProcessEnv,
  stdin: string,
  on: Host | Config,
  opts: { throwBlockNeeded?: boolean } = {},
): CniOutcome {
  let version = guessVersion(stdin);
  try {
    const cni = parseEnv(env);
    if (cni.command === "VERSION")
      return ok(JSON.stringify({ cniVersion: version, supportedVersions: [...SUPPORTED_VERSIONS] }));
    const conf: NetConf = parseConf(stdin);
    version = conf.cniVersion;
    const host = on instanceof Host ? on : Host.open(on);
    try {
      switch (cni.command) {
        case "ADD":
          return ok(JSON.stringify(formatResult(version, cniAdd(host, cni, conf))));
        case "DEL":
          cniDel(host, cni);
          return ok("");
        case "CHECK":
          cniCheck(host, cni, conf);
          return ok("");
        case "GC":
          cniGc(host, conf);
          return ok("");
        case "STATUS":
          cniStatus(host, conf);
          return ok("");
      }
      throw new Error(`unknown CNI command ${String(cni.command)}`);
    } finally {
      if (host !== on) host.close();
    }
  } catch (err) {
    // An engine that can lease a block in etcd (an overlay network whose blocks here are full) does so and asks again.
    if (opts.throwBlockNeeded && err instanceof BlockNeeded) throw err;
    return cniFailure(env, version, err);
  }
}

function cniFailure(env: NodeJS.ProcessEnv, version: string, err: unknown): CniOutcome {
  const e: CniError = toCniError(err);
  if (env.NETCTX_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  return { code: 1, stdout: errorJson(version, e) };
}

/** The CNI error reply for a failure outside runCni (the engine's block lease failed: etcd away, subnet full). */
export function cniFailureOf(env: NodeJS.ProcessEnv, stdin: string, err: unknown): CniOutcome {
  return cniFailure(env, guessVersion(stdin), err);
}

function ok(stdout: string): CniOutcome {
  return { code: 0, stdout };
}

/** The error's cniVersion should be the config's, even when the config itself is what failed. */
function guessVersion(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    return typeof v === "string" && v ? v : DEFAULT_VERSION;
  } catch {
    return DEFAULT_VERSION;
  }
}

export function readStdin(): string {
  try {
    return readFileSync(0, "utf8");
  } catch {
    return "";
  }
}
