/**
 * What the policy tables' recompute (engine/policy-sync.ts) costs a context's create and rm: 200 l2 contexts made
 * and removed one by one through the library, on a plain network without policies, and on a `--default-deny`
 * network with 10 policies selecting them by label. The data path's own write is not in it (the tables are handed
 * to networks/policy-datapath.ts); this measures the compile and the store reads that feed it.
 *   unshare --net --mount bash -c 'mount -t tmpfs tmpfs /run/netns; node --import tsx bench/policy-recompute.ts'
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readConfig } from "../src/config.ts";
import { createContext, removeContext } from "../src/engine/contexts.ts";
import { createNetwork, removeNetwork } from "../src/engine/networks.ts";
import { addPolicy } from "../src/engine/policies.ts";
import { syncPolicyTables } from "../src/engine/policy-sync.ts";
import { Host } from "../src/host.ts";

const N = Number(process.env.POLICY_BENCH_N ?? 200);
const POLICIES = 10;

function run(withPolicies: boolean): { create: number; rm: number; sync: number } {
  let sync = 0;
  const dir = mkdtempSync(join(tmpdir(), "netctx-polbench-"));
  const host = Host.open(readConfig(process.env, { stateDir: dir }));
  try {
    createNetwork(host, {
      name: "pb",
      driver: "bridge",
      subnets: ["10.120.0.0/16"],
      ...(withPolicies ? { defaultDeny: true } : {}),
    });
    if (withPolicies)
      for (let i = 0; i < POLICIES; i++)
        addPolicy(host, {
          name: `p${i}`,
          to: `group=g${i}`,
          from: `group=g${(i + 1) % POLICIES}`,
          ports: ["80", "443"],
        });
    const t0 = performance.now();
    for (let i = 0; i < N; i++)
      createContext(host, {
        name: `pb${i}`,
        level: "l2",
        networks: ["pb"],
        labels: { group: `g${i % POLICIES}` },
      });
    const t1 = performance.now();
    const s0 = performance.now();
    for (let i = 0; i < 50; i++) syncPolicyTables(host, ["pb0"]);
    sync = (performance.now() - s0) / 50;
    const t1b = performance.now();
    for (let i = 0; i < N; i++) removeContext(host, `pb${i}`);
    host.flushDeferred();
    const t2 = performance.now() - (t1b - t1);
    removeNetwork(host, "pb");
    return { create: (t1 - t0) / N, rm: (t2 - t1) / N, sync };
  } finally {
    host.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows: { variant: string; create: number; rm: number; sync: number }[] = [];
for (let round = 0; round < 3; round++)
  for (const withPolicies of round % 2 === 0 ? [false, true] : [true, false])
    rows.push({ variant: withPolicies ? "default-deny + 10 policies" : "plain", ...run(withPolicies) });
for (const variant of ["plain", "default-deny + 10 policies"]) {
  const mine = rows.filter((r) => r.variant === variant);
  const med = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const create = med(mine.map((r) => r.create));
  const rm = med(mine.map((r) => r.rm));
  const sync = med(mine.map((r) => r.sync));
  console.log(
    `${variant}: create ${create.toFixed(2)} ms, rm ${rm.toFixed(2)} ms, create+rm ${(create + rm).toFixed(2)} ms per context; one recompute at ${N} contexts ${sync.toFixed(3)} ms (median of ${mine.length} runs of ${N})`,
  );
}
