import assert from "node:assert/strict";
import { test } from "node:test";
import { netctxJson, netctxOk, netctxParallel } from "../utils/cli.ts";
import { ping } from "../utils/ping.ts";

test("16 concurrent `netctx create` processes on one network get 16 distinct addresses", async () => {
  netctxOk(
    "network",
    "create",
    "busy",
    "--driver",
    "bridge",
    "--subnet",
    "10.85.0.0/24",
    "--subnet",
    "fd85::/64",
  );
  const names = Array.from({ length: 16 }, (_, i) => `p${i}`);
  const results = await netctxParallel(names.map((n) => ["create", n, "--level", "l2", "--network", "busy"]));
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  const views = netctxJson<{ name: string; addresses: string[]; netns: string }[]>("ls");
  assert.equal(views.length, 16);
  const all = views.flatMap((v) => v.addresses);
  assert.equal(new Set(all).size, 32, "16 distinct v4 and 16 distinct v6 addresses");
  // And they are real: the first reaches the last.
  const last = views
    .find((v) => v.name === "p15")!
    .addresses.find((a) => !a.includes(":"))!
    .split("/")[0]!;
  assert.ok(ping(views.find((v) => v.name === "p0")!.netns, last));
});
