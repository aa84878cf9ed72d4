/**
 * Runs the Policy section (bench/policy.ts) alone and prints it:
 *   node --import tsx bench/policy-check.ts [--quick]
 * Re-runs itself inside a throwaway host namespace, as bench/run.ts does, with a cgroup parent of its own.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { cgroup2Root } from "../src/kernel/cgroup.ts";
import { insideSandbox, sandboxArgv } from "../src/sandbox.ts";
import { policySection } from "./policy.ts";

if (!insideSandbox(process.env)) {
  const argv = sandboxArgv([process.execPath, ...process.execArgv, ...process.argv.slice(1)]);
  const r = spawnSync(argv[0]!, argv.slice(1), { stdio: "inherit" });
  process.exit(r.status ?? 1);
}

function removeTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true }))
    if (e.isDirectory()) removeTree(join(dir, e.name));
  rmdirSync(dir);
}

const started = Date.now();
const parent = join(cgroup2Root(), `netctx-bench-pol-${process.pid}`);
process.env.NETCTX_CGROUP_PARENT = parent;
try {
  const r = await policySection(process.argv.includes("--quick"), (l) => console.log(l));
  console.log(r.text);
  for (const v of r.verdicts) console.log(`${v.status.padEnd(12)} ${v.goal}: ${v.figure}`);
} finally {
  removeTree(parent);
}
console.log(`wall time: ${((Date.now() - started) / 1000).toFixed(1)} s`);
