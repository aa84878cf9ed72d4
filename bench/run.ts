/**
 * npm run bench [-- --quick]: netctx side by side with its peers in one run, inside a throwaway host namespace.
 * Writes BENCHMARKS.md. Peers come from ../shared/peers/setup.sh (Debian containernetworking-plugins); a missing
 * peer is reported, not faked.
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { insideSandbox, sandboxArgv } from "../src/sandbox.ts";
import { netctxCniLifecycle } from "./cni-netctx.ts";
import { bridgeConf, cniAvailable, cniLifecycle } from "./cni-peer.ts";
import { cliLifecycle, type LifecycleResult, libraryLifecycle } from "./l2-lifecycle.ts";

if (!insideSandbox()) {
  const argv = sandboxArgv([process.execPath, ...process.execArgv, ...process.argv.slice(1)]);
  const r = spawnSync(argv[0]!, argv.slice(1), { stdio: "inherit" });
  process.exit(r.status ?? 1);
}

const quick = process.argv.includes("--quick");
const n = quick ? 30 : 100;
const rows: LifecycleResult[] = [];
const log = (r: LifecycleResult) => {
  rows.push(r);
  console.log(
    `${r.label.padEnd(28)} N=${r.n}  setup ${r.setup.median} ms (p95 ${r.setup.p95})  teardown ${r.teardown.median} ms (p95 ${r.teardown.p95})  both ${r.both.median} ms`,
  );
};

log(libraryLifecycle(n));
log(cliLifecycle(n));
log(await netctxCniLifecycle(n, true));
log(await netctxCniLifecycle(n, false));
if (cniAvailable("bridge")) {
  log(cniLifecycle("CNI bridge + ipMasq", n, (dir) => bridgeConf(true, dir)));
  log(cniLifecycle("CNI bridge, no masq", n, (dir) => bridgeConf(false, dir, "10.202.0.0/16")));
} else console.log(`CNI reference plugins not found in /usr/lib/cni: run ../shared/peers/setup.sh`);

const reference = rows.find((r) => r.label === "CNI bridge + ipMasq");
const ratio = (r: LifecycleResult) =>
  reference ? (r.both.median / reference.both.median).toFixed(3) : "n/a";
const table = [
  "| path | N | setup median ms | setup p95 | teardown median ms | teardown p95 | setup+teardown median | ratio to CNI bridge + ipMasq |",
  "|---|---|---|---|---|---|---|---|",
  ...rows.map(
    (r) =>
      `| ${r.label} | ${r.n} | ${r.setup.median} | ${r.setup.p95} | ${r.teardown.median} | ${r.teardown.p95} | ${r.both.median} | ${ratio(r)} |`,
  ),
].join("\n");
const doc = `# netctx benchmarks

Machine: ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, kernel ${spawnSync("uname", ["-r"], { encoding: "utf8" }).stdout.trim()}, node ${process.version}.
Date: ${new Date().toISOString()}. Mode: ${quick ? "quick" : "full"}. All figures from one run, inside one throwaway host namespace.

## l2 context setup and teardown, per context

Setup = netns + veth into a bridge network with NAT + addresses + routes (the peers: \`ip netns add\` + CNI ADD);
teardown = rm (the peers: CNI DEL + \`ip netns del\`).

${table}
`;
writeFileSync(join(import.meta.dirname, "..", "BENCHMARKS.md"), doc);
console.log("\nwrote BENCHMARKS.md");
