/**
 * Runs one section of `npm run bench` alone and prints it (bench/overlay-check.ts, bench/policy-check.ts): re-runs
 * the calling script inside a throwaway host namespace, as bench/run.ts does, with a cgroup parent of its own that
 * it removes afterwards.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { cgroup2Root } from "../src/kernel/cgroup.ts";
import { insideSandbox, sandboxArgv } from "../src/sandbox.ts";

interface SectionResult {
  text: string;
  verdicts: readonly { status: string; goal: string; figure: string }[];
}

function removeTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true }))
    if (e.isDirectory()) removeTree(join(dir, e.name));
  rmdirSync(dir);
}

export async function runSectionAlone(
  tag: string,
  section: (quick: boolean, log: (line: string) => void) => Promise<SectionResult>,
): Promise<void> {
  if (!insideSandbox(process.env)) {
    const argv = sandboxArgv([process.execPath, ...process.execArgv, ...process.argv.slice(1)]);
    const r = spawnSync(argv[0]!, argv.slice(1), { stdio: "inherit" });
    process.exit(r.status ?? 1);
  }
  const started = Date.now();
  const parent = join(cgroup2Root(), `netctx-bench-${tag}-${process.pid}`);
  process.env.NETCTX_CGROUP_PARENT = parent;
  try {
    const r = await section(process.argv.includes("--quick"), (l) => console.log(l));
    console.log(r.text);
    for (const v of r.verdicts) console.log(`${v.status.padEnd(12)} ${v.goal}: ${v.figure}`);
  } finally {
    removeTree(parent);
  }
  console.log(`wall time: ${((Date.now() - started) / 1000).toFixed(1)} s`);
}
