import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readConfig } from "../src/config.ts";
import { createContext, removeContext } from "../src/engine/contexts.ts";
import { createNetwork, removeNetwork } from "../src/engine/networks.ts";
import { addPolicy } from "../src/engine/policies.ts";
import { Host } from "../src/host.ts";
import { insideSandbox, sandboxArgv } from "../src/sandbox.ts";

if (!insideSandbox(process.env)) {
  const argv = sandboxArgv([process.execPath, ...process.execArgv, ...process.argv.slice(1)]);
  process.exit(spawnSync(argv[0]!, argv.slice(1), { stdio: "inherit" }).status ?? 1);
}
process.env.NETCTX_CGROUP_PARENT = "/sys/fs/cgroup/unified/netctx-polprof";
const n = 100;
const med = (a: number[]) => a.sort((x, y) => x - y)[a.length >> 1]!;
function round(policed: boolean) {
  const host = Host.open(readConfig(process.env, { stateDir: mkdtempSync(join(tmpdir(), "polprof-")) }));
  createNetwork(host, {
    name: "plc",
    driver: "bridge",
    subnets: ["10.140.0.0/20"],
    ...(policed ? { defaultDeny: true } : {}),
  });
  if (policed)
    for (let i = 0; i < n; i++) {
      addPolicy(host, { name: `c${i}-web`, to: `c${i}`, from: `c${(i + 1) % n}`, ports: ["80/tcp"] });
      addPolicy(host, { name: `c${i}-tls`, to: `c${i}`, from: `c${(i + 2) % n}`, ports: ["443/tcp"] });
    }
  const c: number[] = [],
    r: number[] = [];
  const cpu = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  for (let i = 0; i < n; i++) {
    const t = cpu();
    createContext(host, { name: `c${i}`, level: "l2", networks: ["plc"] });
    c.push(cpu() - t);
  }
  for (let i = 0; i < n; i++) {
    const t = cpu();
    removeContext(host, `c${i}`);
    r.push(cpu() - t);
  }
  host.flushDeferred();
  removeNetwork(host, "plc");
  host.close();
  return { c: med(c), r: med(r) };
}
const only = process.env.ONLY;
for (let k = 0; k < Number(process.env.ROUNDS ?? 3); k++)
  for (const p of [false, true]) {
    if (only && String(p) !== only) continue;
    const x = round(p);
    console.log(
      `${p ? "policed" : "plain  "} create ${x.c.toFixed(2)} rm ${x.r.toFixed(2)} sum ${(x.c + x.r).toFixed(2)}`,
    );
  }
