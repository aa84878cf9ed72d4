/** Commands the tests run themselves (set-up, kernel changes by hand), failing loudly. */
import { execFileSync, spawnSync } from "node:child_process";

/** A shell script, stopped at its first failing command (sh -e); returns stdout, throws on failure. */
export function sh(script: string): string {
  return execFileSync("sh", ["-ec", script], { encoding: "utf8" });
}

/** Run argv and insist on exit 0; returns stdout, throws with stderr otherwise. */
export function must(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
  return r.stdout;
}
