/** Small on-the-wire checks the demo (and tests) run from inside a context or namespace. */
import { spawnSync } from "node:child_process";

export interface ProbeResult {
  ok: boolean;
  output: string;
}

export function run(argv: string[], timeoutMs = 5000): ProbeResult {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: timeoutMs });
  return { ok: r.status === 0, output: `${r.stdout ?? ""}${r.stderr ?? ""}`.trim() };
}

export function nsArgv(netnsPath: string, argv: string[]): string[] {
  return ["nsenter", `--net=${netnsPath}`, "--", ...argv];
}

export function ping(netnsPath: string, address: string): ProbeResult {
  return run(nsArgv(netnsPath, ["ping", "-n", "-q", "-c", "1", "-W", "1", address]));
}
