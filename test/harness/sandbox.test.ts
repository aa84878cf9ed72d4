import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { ipj } from "../utils/kernel-oracle.ts";

test("each test file runs in its own throwaway host namespace", () => {
  const links = ipj<{ ifname: string }>(["link", "show"]);
  assert.deepEqual(
    links.map((l) => l.ifname),
    ["lo"],
  );
  const mounts = readFileSync("/proc/self/mounts", "utf8");
  assert.match(mounts, /netctx-netns \/run\/netns tmpfs/);
  assert.ok(process.env.NETCTX_STATE_DIR?.includes("netctx-test-"));
});
