/**
 * 64 `netctx create` processes started at once on one network: all succeed with 64 distinct addresses, or, on a
 * pool too small for them, the rest fail cleanly (one line, "no free address") and leave nothing behind.
 * Every waiting process is bounded by the store's busy budget (src/state/db.ts), so the whole crowd finishes.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { specOf } from "../../src/levels/driver.ts";
import { netctxOk, netctxParallel } from "../utils/cli.ts";
import { ping } from "../utils/ping.ts";
import { disagreements, openStore } from "../utils/state-oracle.ts";
import { eventually } from "../utils/wait.ts";

const N = 64;

test(`${N} parallel creates on one network get ${N} distinct addresses and all work`, async () => {
  netctxOk(
    "network",
    "create",
    "wide",
    "--driver",
    "bridge",
    "--subnet",
    "10.60.0.0/24",
    "--subnet",
    "fd60::/64",
  );
  const started = Date.now();
  const results = await netctxParallel(
    Array.from({ length: N }, (_, i) => ["create", `w${i}`, "--level", "l2", "--network", "wide"]),
  );
  const secs = (Date.now() - started) / 1000;
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  const store = openStore();
  try {
    const contexts = store.listContexts();
    assert.equal(contexts.length, N);
    const addrs = contexts.flatMap((c) => specOf(c).attachments.flatMap((a) => a.addresses));
    assert.equal(new Set(addrs).size, 2 * N, "distinct v4 and v6 addresses");
    assert.equal(store.leases({ network: "wide" }).length, 2 * N);
    assert.deepEqual(disagreements(store, process.env.NETCTX_CGROUP_PARENT), []);
    // On the wire: every context reaches the gateway, and the first reaches the last.
    for (const c of contexts)
      assert.ok(ping(specOf(c).netns!, "10.60.0.1") || ping(specOf(c).netns!, "10.60.0.1"), c.name);
    const last = specOf(contexts[N - 1]!).attachments[0]!.addresses[0]!.split("/")[0]!;
    assert.ok(ping(specOf(contexts[0]!).netns!, last));
  } finally {
    store.close();
  }
  console.log(`${N} parallel creates finished in ${secs.toFixed(1)} s`);
  netctxOk("rm", ...Array.from({ length: N }, (_, i) => `w${i}`));
  netctxOk("network", "rm", "wide");
});

test(`${N} parallel creates on a pool of 29 addresses: 29 succeed, the rest fail cleanly with nothing left behind`, async () => {
  // 10.61.0.0/27: 32 addresses minus network, broadcast and gateway = 29.
  netctxOk("network", "create", "small", "--driver", "bridge", "--subnet", "10.61.0.0/27");
  const results = await netctxParallel(
    Array.from({ length: N }, (_, i) => ["create", `s${i}`, "--level", "l2", "--network", "small"]),
  );
  const ok = results.filter((r) => r.code === 0);
  const failed = results.filter((r) => r.code !== 0);
  const other = failed.filter((r) => !/no free address/.test(r.stderr)).map((r) => r.stderr.trim());
  assert.deepEqual(other, [], "every failure is the pool running out");
  assert.equal(ok.length, 29);
  for (const r of failed) {
    assert.match(r.stderr, /^error: network "small": no free address left in 10\.61\.0\.0\/27\n$/);
  }
  const store = openStore();
  try {
    assert.equal(store.listContexts().length, 29);
    assert.equal(new Set(store.leases({ network: "small" }).map((l) => l.address)).size, 29);
    const problems = eventually(() => disagreements(store, process.env.NETCTX_CGROUP_PARENT), [], 3000);
    assert.deepEqual(problems, []);
  } finally {
    store.close();
  }
});
