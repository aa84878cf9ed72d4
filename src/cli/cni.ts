/** netctx cni install DIR: put the CNI plugin executable `netctx` where a runtime looks for plugins. */
import { chmodSync, existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";

/** The repo root, from src/cli/ or from the bundle in dist/ alike. */
function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

const ROOT = findRoot();
const BUNDLE = join(ROOT, "dist", "cni", "netctx-cni.mjs");
const SOURCE = join(ROOT, "src", "cni", "entry.ts");

/** Shell-quote for a POSIX sh script. */
function q(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/**
 * The launcher is two lines of sh: exec node on the bundle, with absolute paths so the runtime's PATH does not
 * matter. Without a bundle it runs the sources through tsx (correct, ~0.4 s slower per call).
 */
export function launcherScript(stateDir: string | undefined): string {
  const node = process.execPath;
  const target = existsSync(BUNDLE)
    ? `exec ${q(node)} ${q(BUNDLE)}`
    : `exec ${q(node)} --import tsx ${q(SOURCE)}`;
  const lines = ["#!/bin/sh", "# netctx CNI plugin launcher (written by `netctx cni install`)"];
  if (stateDir)
    lines.push(`: "\${NETCTX_STATE_DIR:=${stateDir.replaceAll('"', "")}}"`, "export NETCTX_STATE_DIR");
  if (!existsSync(BUNDLE)) lines.push(`cd ${q(ROOT)}`);
  lines.push(target, "");
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
