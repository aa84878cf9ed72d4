/**
 * What a gc costs with many l2 contexts (issue 17: observing each context's netns from inside must stay cheap).
 * Prints the timings; asserts only a loose bound, so that a slow host does not fail it.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { netctxJson, netctxOk, netctxParallel } from "../utils/cli.ts";

const N = Number(process.env.NETCTX_GC_COST_N ?? 200);

function timed(...args: string[]): number {
  const t0 = performance.now();
  netctxOk(...args);
  return performance.now() - t0;
}

test(`gc and ls with ${N} l2 contexts on a bridge and a routed network`, async () => {
  netctxOk("network", "create", "cb", "--driver", "bridge", "--subnet", "10.120.0.0/20");
  netctxOk("network", "create", "cr", "--driver", "routed", "--subnet", "10.121.0.0/20");
  const names = Array.from({ length: N }, (_, i) => `k${i}`);
  for (let i = 0; i < names.length; i += 4) {
    const batch = names
      .slice(i, i + 4)
      .map((n, j) => ["create", n, "--level", "l2", "--network", (i + j) % 2 ? "cr" : "cb"]);
    for (const r of await netctxParallel(batch)) assert.equal(r.code, 0, r.stderr);
  }
  timed("gc", "--dry-run"); // warm
  const runs = (args: string[]) => {
    const t = [0, 1, 2].map(() => timed(...args)).sort((a, b) => a - b);
    return Math.round(t[1]!);
  };
  const dry = runs(["gc", "--dry-run", "--json"]);
  const gc = runs(["gc"]);
  const ls = runs(["ls", "--json"]);
  const netls = runs(["network", "ls"]);
  console.log(
    `GC-COST N=${N}: gc --dry-run ${dry} ms, gc ${gc} ms, ls ${ls} ms, network ls ${netls} ms (medians of 3)`,
  );
  assert.deepEqual(netctxJson<{ actions: unknown[] }>("gc", "--dry-run").actions, []);
  assert.ok(gc < 60_000);
});
