/**
 * bench/cpu-budget.ts: the cpu controller is found where the mounts say (v2 when its root offers cpu, else the v1
 * hierarchy with the cpu option), and a busy process put into a budget gets about that share of a core and no more;
 * the budget's cgroups are gone after remove().
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { processCpuMs } from "../../bench/child-cpu.ts";
import { budgetWrites, CpuBudget, findCpuController } from "../../bench/cpu-budget.ts";

const HYBRID = [
  "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0",
  "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0",
  "cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0",
  "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0",
].join("\n");

test("the cpu controller: v2 when the cgroup2 root offers cpu, else the v1 mount with the cpu option", () => {
  assert.deepEqual(
    findCpuController(HYBRID, ["/sys/fs/cgroup/unified"], () => "hugetlb\n"),
    { version: 1, mount: "/sys/fs/cgroup/cpu" },
  );
  assert.deepEqual(
    findCpuController(HYBRID, ["/sys/fs/cgroup/unified"], () => "cpuset cpu io memory pids\n"),
    { version: 2, mount: "/sys/fs/cgroup/unified" },
  );
  const combined = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0";
  assert.deepEqual(
    findCpuController(combined, [], () => ""),
    { version: 1, mount: "/sys/fs/cgroup/cpu,cpuacct" },
  );
  assert.equal(
    findCpuController("cgroup /x cgroup rw,cpuacct 0 0", [], () => ""),
    undefined,
  );
});

test("the files a budget writes, and bad specs refused naming the field", () => {
  assert.deepEqual(budgetWrites(2, { share: 0.35, periodUs: 10_000 }), [["cpu.max", "3500 10000"]]);
  assert.deepEqual(budgetWrites(1, { share: 0.35, periodUs: 10_000 }), [
    ["cpu.cfs_period_us", "10000"],
    ["cpu.cfs_quota_us", "3500"],
  ]);
  assert.throws(() => budgetWrites(1, { share: 1.5, periodUs: 10_000 }), /share/);
  assert.throws(() => budgetWrites(1, { share: 0.3, periodUs: 10 }), /periodUs/);
});

test("a busy process in a 20% budget runs about 20% of a core; remove() takes the cgroups away", async (t) => {
  const controller = findCpuController();
  if (!controller) return t.skip("no cpu controller on this machine");
  const budget = new CpuBudget(
    controller,
    { share: 0.2, periodUs: 10_000 },
    `netctx-test-budget-${process.pid}`,
  );
  const busy = spawn("sh", ["-c", "while :; do :; done"], { stdio: "ignore" });
  try {
    budget.put(busy.pid!);
    const cpu0 = processCpuMs(busy.pid!);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 1500));
    const share = (processCpuMs(busy.pid!) - cpu0) / (performance.now() - t0);
    // Unbudgeted it takes a whole core (~100%, or ~50% beside another busy helper); 20% +- clock-tick granularity.
    assert.ok(share > 0.1 && share < 0.3, `share ${share.toFixed(2)} of a core, budget 0.2`);
    assert.ok(budget.throttling().throttled > 0, "throttled in some periods");
  } finally {
    busy.kill("SIGKILL");
    await new Promise((r) => busy.once("exit", r));
    budget.remove();
  }
  assert.equal(existsSync(budget.dir), false);
  assert.equal(existsSync(budget.parent), false);
});
