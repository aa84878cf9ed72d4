import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";

test("each test file runs in its own throwaway host namespace", () => {
  const links = JSON.parse(execFileSync("ip", ["-j", "link", "show"], { encoding: "utf8" })) as {
    ifname: string;
  }[];
  assert.deepEqual(
    links.map((l) => l.ifname),
    ["lo"],
  );
  const mounts = readFileSync("/proc/self/mounts", "utf8");
  assert.match(mounts, /netctx-netns \/run\/netns tmpfs/);
  assert.ok(process.env.NETCTX_STATE_DIR?.includes("netctx-test-"));
});
