import assert from "node:assert/strict";
import { spawn } from "node:child_process";
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

describe("cgroup directories", () => {
  test("root, parent, id and processes as the kernel reports them; EBUSY while populated", async () => {
    assert.equal(cgroup2Root(), "/sys/fs/cgroup/unified");
    assert.equal(contextsCgroupParent(), process.env.NETCTX_CGROUP_PARENT);
    const cg = join(contextsCgroupParent(), "x");
    createCgroup(cg);
    createCgroup(cg);
    assert.equal(cgroupId(cg), statSync(cg, { bigint: true }).ino);
    const child = spawn("sh", ["-c", 'echo $$ > "$1/cgroup.procs" && exec sleep 30', "sh", cg], {
      stdio: "ignore",
    });
    try {
      for (let i = 0; i < 100 && cgroupProcs(cg).length === 0; i++)
        await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(cgroupProcs(cg), [child.pid]);
      assert.throws(
        () => removeCgroup(cg),
        (err: unknown) => err instanceof NetctxError && /EBUSY.*processes \d+/.test(err.message),
      );
    } finally {
      child.kill();
      await new Promise((r) => child.on("close", r));
    }
    for (let i = 0; i < 100 && cgroupProcs(cg).length > 0; i++) await new Promise((r) => setTimeout(r, 10));
    removeCgroup(cg);
    removeCgroup(cg);
    assert.deepEqual(cgroupProcs(cg), []);
  });
});
