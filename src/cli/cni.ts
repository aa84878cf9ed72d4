/** netctx cni install DIR: put the CNI plugin executable `netctx` where a runtime looks for plugins. */
import { chmodSync, existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { CNI_ENV_KEYS, cniHeaderName } from "../api/server.ts";
import { DEFAULT_STATE_DIR } from "../api/socket-path.ts";

/** The repo root, from src/cli/ or from the bundle in dist/ alike. */
function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

const ROOT = findRoot();
const BUNDLE = join(ROOT, "dist", "cni", "netctx-cni.mjs");
const SOURCE = join(ROOT, "src", "cni", "entry.ts");
const CLIENT = join(ROOT, "dist", "cni", "netctx-cni-client");

/** Shell-quote for a POSIX sh script. */
function q(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/**
 * The launcher is a few lines of sh. It hands the call to the resident engine (`netctx serve`) when one listens,
 * else execs node on the bundle (~0.1-0.2 s), with absolute paths so the runtime's PATH does not matter.
 * The hand-off is our C client (dist/cni/netctx-cni-client, ~0.5 ms a call, measured against ~15 ms for curl),
 * which itself falls back to node when nobody answers; built without a C compiler, curl does the hand-off and
 * its exit 7 (nobody answers on the socket, a leftover of a killed engine) sends the call to node.
 * VERSION never needs the engine. Without a bundle it runs the sources through tsx.
 */
export function launcherScript(stateDir: string | undefined): string {
  const node = process.execPath;
  const target = existsSync(BUNDLE) ? `${q(node)} ${q(BUNDLE)}` : `${q(node)} --import tsx ${q(SOURCE)}`;
  const lines = ["#!/bin/sh", "# netctx CNI plugin launcher (written by `netctx cni install`)"];
  if (stateDir)
    lines.push(`: "\${NETCTX_STATE_DIR:=${stateDir.replaceAll('"', "")}}"`, "export NETCTX_STATE_DIR");
  // A runtime execs the plugin with a bare env: the cgroups chosen at install time (tests: a private parent, so the
  // loopback publish hook never lands on the machine's cgroup root) travel in the launcher.
  for (const key of ["NETCTX_CGROUP_PARENT", "NETCTX_PUBLISH_CGROUP"]) {
    const value = process.env[key];
    if (value) lines.push(`: "\${${key}:=${value.replaceAll('"', "")}}"`, `export ${key}`);
  }
  if (!existsSync(BUNDLE)) lines.push(`cd ${q(ROOT)}`);
  lines.push(`sock="\${NETCTX_SOCKET:-\${NETCTX_STATE_DIR:-${DEFAULT_STATE_DIR}}/netctx.sock}"`);
  if (existsSync(CLIENT)) {
    lines.push(`exec ${q(CLIENT)} "$sock" -- ${target}`, "");
    return lines.join("\n");
  }
  const headers = CNI_ENV_KEYS.map((key) => `-H "${cniHeaderName(key)}: $${key}"`).join(" ");
  lines.push(
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

export function installCni(dir: string, stateDir = process.env.NETCTX_STATE_DIR): string {
  const abs = resolve(dir);
  mkdirSync(abs, { recursive: true });
  const path = join(abs, "netctx");
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, launcherScript(stateDir ? resolve(stateDir) : undefined), { mode: 0o755 });
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
    .action((dir: string) => {
      console.log(installCni(dir));
    });
}
