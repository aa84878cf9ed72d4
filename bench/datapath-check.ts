/**
 * Runs the data path section alone and prints it:
 *   node --import tsx bench/datapath-check.ts [--quick]
 * Re-runs itself inside a throwaway host namespace, as bench/run.ts does.
 */
import { spawnSync } from "node:child_process";
import { insideSandbox, sandboxArgv } from "../src/sandbox.ts";
import { datapathSection } from "./datapath.ts";

if (!insideSandbox(process.env)) {
  const argv = sandboxArgv([process.execPath, ...process.execArgv, ...process.argv.slice(1)]);
  const r = spawnSync(argv[0]!, argv.slice(1), { stdio: "inherit" });
  process.exit(r.status ?? 1);
}

const started = Date.now();
console.log((await datapathSection(process.argv.includes("--quick"))).text);
console.log(`wall time: ${((Date.now() - started) / 1000).toFixed(1)} s`);
