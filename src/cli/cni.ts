/** netctx cni install DIR: put the CNI plugin executable `netctx` where a runtime looks for plugins. */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { CNI_ENV_KEYS, cniHeaderName } from "../api/server.ts";
import { DEFAULT_STATE_DIR } from "../config.ts";
import { invalid } from "../errors.ts";
import { packageRoot } from "../package-root.ts";
import { namedStateDir } from "./config.ts";
import { printJson } from "./output.ts";

const ROOT = packageRoot();
const BUNDLE = join(ROOT, "dist", "cni", "netctx-cni.mjs");
const SOURCE = join(ROOT, "src", "cni", "entry.ts");
const CLIENT = join(ROOT, "dist", "cni", "netctx-cni-client");

/** Shell-quote for a POSIX sh script. */
function q(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/**
 * The environment a runtime's bare exec lacks: the state dir, and the cgroups chosen at install time (tests: a
 * private parent, so the loopback publish hook never lands on the machine's cgroup root).
 */
function installDefaults(stateDir: string | undefined): [string, string][] {
  const out: [string, string][] = stateDir ? [["NETCTX_STATE_DIR", stateDir]] : [];
  for (const key of ["NETCTX_CGROUP_PARENT", "NETCTX_PUBLISH_CGROUP"]) {
    const value = process.env[key];
    if (value) out.push([key, value]);
  }
  return out;
}

/** How the plugin runs netctx itself (no engine, or VERSION): node on the bundle, or the sources through tsx. */
function fallbackArgv(): string[] {
  return existsSync(BUNDLE) ? [process.execPath, BUNDLE] : [process.execPath, "--import", "tsx", SOURCE];
}

/**
 * The plugin a runtime execs per verb is our C client (src/cni/client.c) with its configuration appended: with the
 * engine up it hands the call over the socket (~0.5 ms, measured against ~15 ms for curl and ~2 ms for an sh
 * wrapper), else it execs node on the bundle (~0.1-0.2 s).
 */
function clientPlugin(stateDir: string | undefined): Buffer {
  const lines = [
    ...installDefaults(stateDir).map(([k, v]) => `env ${k}=${v}`),
    ...fallbackArgv().map((a) => `arg ${a}`),
  ];
  if (lines.some((l) => l.includes("\n")))
    throw invalid("dir", "a path the plugin would carry holds a newline");
  const config = Buffer.from(`${lines.join("\n")}\n`);
  const trailer = Buffer.from(`${config.length.toString(16).padStart(8, "0")}NCXCONF1`);
  return Buffer.concat([readFileSync(CLIENT), config, trailer]);
}

/**
 * Built without a C compiler, the plugin is a few lines of sh: curl hands the call to the engine, and its exit 7
 * (nobody answers on the socket, a leftover of a killed engine) sends the call to node. VERSION never needs the
 * engine. Without a bundle it runs the sources through tsx.
 */
function launcherScript(stateDir: string | undefined): string {
  const target = fallbackArgv().map(q).join(" ");
  const lines = ["#!/bin/sh", "# netctx CNI plugin launcher (written by `netctx cni install`)"];
  for (const [key, value] of installDefaults(stateDir))
    lines.push(`: "\${${key}:=${value.replaceAll('"', "")}}"`, `export ${key}`);
  if (!existsSync(BUNDLE)) lines.push(`cd ${q(ROOT)}`);
  const headers = CNI_ENV_KEYS.map((key) => `-H "${cniHeaderName(key)}: $${key}"`).join(" ");
  lines.push(
    `sock="\${NETCTX_SOCKET:-\${NETCTX_STATE_DIR:-${DEFAULT_STATE_DIR}}/netctx.sock}"`,
    `conf=$(cat)`,
    `if [ "$CNI_COMMAND" != VERSION ] && [ -S "$sock" ] && command -v curl >/dev/null 2>&1; then`,
    `  printf '%s' "$conf" | curl -s --fail-with-body --unix-socket "$sock" --data-binary @- ${headers} http://netctx/v1/cni`,
    `  rc=$?`,
    `  [ "$rc" -eq 7 ] || exit "$rc"`,
    `fi`,
    `printf '%s' "$conf" | exec ${target}`,
    "",
  );
  return lines.join("\n");
}

export function installCni(dir: string, stateDir = namedStateDir()): string {
  const abs = resolve(dir);
  mkdirSync(abs, { recursive: true });
  const path = join(abs, "netctx");
  const tmp = `${path}.tmp-${process.pid}`;
  const dir_ = stateDir ? resolve(stateDir) : undefined;
  writeFileSync(tmp, existsSync(CLIENT) && existsSync(BUNDLE) ? clientPlugin(dir_) : launcherScript(dir_), {
    mode: 0o755,
  });
  chmodSync(tmp, 0o755);
  // A runtime may exec the plugin while we replace it: rename is atomic, a rewrite in place is not (ETXTBSY).
  renameSync(tmp, path);
  return path;
}

export function registerCni(program: Command): void {
  const cni = program
    .command("cni")
    .description("CNI plugin for container runtimes (podman, containerd, CRI-O)");
  cni
    .command("install")
    .description("write the CNI plugin executable `netctx` into DIR (a runtime's CNI plugin directory)")
    .argument("<dir>")
    .option("--json", 'print {"installed": PATH}')
    .action((dir: string, o: { json?: boolean }) => {
      const installed = installCni(dir);
      if (o.json) printJson({ installed });
      else console.log(installed);
    });
}
