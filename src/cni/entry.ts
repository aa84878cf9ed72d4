/**
 * Executable entry of the CNI plugin (bundled to dist/netctx-cni.mjs; the installed launcher runs it).
 * libcni calls VERSION on every plugin of every conflist it loads (podman: three times per `podman run`), so that
 * verb is answered before the engine (koffi, SQLite, zod) is loaded at all.
 */
import { readFileSync } from "node:fs";

const SUPPORTED = ["0.4.0", "1.0.0", "1.1.0"];

function stdinText(): string {
  try {
    return readFileSync(0, "utf8");
  } catch {
    return "";
  }
}

const stdin = stdinText();
if (process.env.CNI_COMMAND === "VERSION") {
  let version = "1.0.0";
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    if (typeof v === "string" && v) version = v;
  } catch {
    // VERSION's input is optional
  }
  process.stdout.write(`${JSON.stringify({ cniVersion: version, supportedVersions: SUPPORTED })}\n`);
} else {
  const { runCni } = await import("./run.ts");
  const { readConfig } = await import("../config.ts");
  // This process is an edge like the CLI: its settings come from the environment the runtime gave it.
  const out = runCni(process.env, stdin, readConfig(process.env));
  if (out.stdout) process.stdout.write(`${out.stdout}\n`);
  process.exitCode = out.code;
}
