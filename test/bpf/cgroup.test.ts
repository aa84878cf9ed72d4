import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { NetctxError } from "../../src/errors.ts";
import {
  cgroup2Root,
  cgroupId,
  cgroupProcs,
  contextsCgroupParent,
  createCgroup,
  removeCgroup,
} from "../../src/kernel/cgroup.ts";
import { inCgroupArgv } from "../utils/cgroup.ts";
import { testConfig } from "../utils/config.ts";
import { waitFor } from "../utils/wait.ts";

describe("cgroup directories", () => {
  test("root, parent, id and processes as the kernel reports them; EBUSY while populated", async () => {
    // Where the kernel's own mount table puts cgroup2 (/sys/fs/cgroup/unified on this hybrid VM, /sys/fs/cgroup on most).
    const mounted = spawnSync("findmnt", ["-n", "-t", "cgroup2", "-o", "TARGET"], { encoding: "utf8" });
    assert.equal(cgroup2Root(), mounted.stdout.split("\n")[0]);
    assert.equal(contextsCgroupParent(testConfig().cgroupParent), process.env.NETCTX_CGROUP_PARENT);
    const cg = join(contextsCgroupParent(testConfig().cgroupParent), "x");
    createCgroup(cg);
    createCgroup(cg);
    assert.equal(cgroupId(cg), statSync(cg, { bigint: true }).ino);
    const [sh, ...args] = inCgroupArgv(cg, ["sleep", "30"]);
    const child = spawn(sh!, args, { stdio: "ignore" });
    try {
      await waitFor(() => cgroupProcs(cg).length > 0, 1000);
      assert.deepEqual(cgroupProcs(cg), [child.pid]);
      assert.throws(
        () => removeCgroup(cg),
        (err: unknown) => err instanceof NetctxError && /EBUSY.*processes \d+/.test(err.message),
      );
    } finally {
      child.kill();
      await new Promise((r) => child.on("close", r));
    }
    await waitFor(() => cgroupProcs(cg).length === 0, 1000);
    removeCgroup(cg);
    removeCgroup(cg);
    assert.deepEqual(cgroupProcs(cg), []);
  });
});
