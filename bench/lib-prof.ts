import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readConfig } from "../src/config.ts";
import { applyScene } from "../src/engine/apply.ts";
import { removeContext } from "../src/engine/contexts.ts";
import { createNetwork } from "../src/engine/networks.ts";
import { Host } from "../src/host.ts";
import { insideSandbox, sandboxArgv } from "../src/sandbox.ts";

if (!insideSandbox(process.env)) {
  const argv = sandboxArgv([process.execPath, ...process.execArgv, ...process.argv.slice(1)]);
  process.exit(spawnSync(argv[0]!, argv.slice(1), { stdio: "inherit" }).status ?? 1);
}
const N = Number(process.argv[2] ?? 500);
const stateDir = mkdtempSync(join(tmpdir(), "netctx-libprof-"));
process.env.NETCTX_CGROUP_PARENT = "/sys/fs/cgroup/unified/netctx-libprof";
const host = Host.open(readConfig(process.env, { stateDir }));
createNetwork(host, { name: "benchnet", driver: "bridge", subnets: ["10.200.0.0/16"], nat: true });
for (let i = 0; i < N; i += 50)
  applyScene(host, {
    name: "fill",
    contexts: Array.from({ length: 50 }, (_, j) => ({
      name: `f${i + j}`,
      level: "l2" as const,
      networks: ["benchnet"],
    })),
  });
const per: number[] = [];
for (let r = 0; r < Number(process.env.ROUNDS ?? 5); r++) {
  const t = performance.now();
  applyScene(host, {
    name: "b",
    contexts: Array.from({ length: 50 }, (_, j) => ({
      name: `b${j}`,
      level: "l2" as const,
      networks: ["benchnet"],
    })),
  });
  const a = performance.now();
  for (let j = 0; j < 50; j++) removeContext(host, `b${j}`);
  host.flushDeferred();
  const b = performance.now();
  per.push((b - t) / 50);
  console.log(`round ${r}: add ${((a - t) / 50).toFixed(2)} rm ${((b - a) / 50).toFixed(2)} ms/ctx`);
}
console.log(`mean ${(per.reduce((x, y) => x + y) / per.length).toFixed(2)} ms/ctx`);
