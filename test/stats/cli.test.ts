/**
 * `netctx stats` as a user runs it: the table, --json in the engine's shape, the same through a running engine, and
 * bad input as one line naming what is wrong, with nothing changed.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, test } from "node:test";
import type { StatsView } from "../../src/engine/stats.ts";
import { NETCTX, netctx, netctxJson, netctxOk, netctxState, startEngine } from "../utils/cli.ts";
import { waitFor } from "../utils/wait.ts";

before(() => {
  netctxOk("network", "create", "cn", "--driver", "bridge", "--subnet", "10.188.0.0/24");
  netctxOk("network", "create", "ch", "--driver", "host", "--subnet", "10.189.0.0/24");
  netctxOk("create", "c2", "--level", "l2", "--network", "cn");
  netctxOk("create", "cs", "--level", "socket", "--network", "ch");
});
after(() => {
  netctx("rm", "c2", "cs");
});

test("a table of contexts and one of networks; --json is the view the engine serves", () => {
  const out = netctxOk("stats");
  const [contexts, networks] = out.trim().split("\n\n");
  assert.match(
    contexts!,
    /^CONTEXT\s+LEVEL\s+NETWORKS\s+RX\s+RX-PKTS\s+RX-DROP\s+TX\s+TX-PKTS\s+TX-DROP\s+CONNS$/m,
  );
  assert.match(contexts!, /^c2\s+l2\s+cn\s+\d+(\.\d)? k?B\s+\d+\s+\d+/m);
  assert.match(contexts!, /^cs\s+socket\s+ch\s/m);
  assert.match(networks!, /^NETWORK\s+DRIVER\s+RX/m);
  assert.match(networks!, /^cn\s+bridge\s/m);
  const view = netctxJson<StatsView>("stats", "cs");
  assert.deepEqual(
    view.contexts.map((c) => c.name),
    ["cs"],
  );
  assert.deepEqual(
    view.networks.map((n) => n.name),
    ["ch"],
  );
});

test("--watch prints again every second with rates", async () => {
  const child = spawn(NETCTX, ["stats", "--watch", "c2"], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d) => {
    out += d;
  });
  await new Promise((resolve) => setTimeout(resolve, 2600));
  child.kill();
  const headers = out.match(/^CONTEXT\s+LEVEL\s+NETWORKS\s+RX\/S\s+TX\/S/gm) ?? [];
  assert.ok(headers.length >= 2, `printed ${headers.length} times:\n${out}`);
  assert.match(
    out,
    /^c2\s+l2\s+cn\s+\d+(\.\d)? k?B\/s\s+\d+(\.\d)? k?B\/s/m,
    "a rate once there are two readings",
  );
});

test("bad input: one line naming it, non-zero exit, nothing changed", () => {
  const state = netctxState();
  for (const [args, message] of [
    [["stats", "nosuch"], /^error: context "nosuch" does not exist$/],
    [["stats", "c2", "nosuch2"], /^error: context "nosuch2" does not exist$/],
    [["stats", "--bogus"], /unknown option '--bogus'/],
  ] as const) {
    const r = netctx(...args);
    assert.notEqual(r.code, 0, args.join(" "));
    assert.match(r.stderr.trim(), message, args.join(" "));
    assert.equal(r.stderr.trim().split("\n").length, 1, "one line");
    assert.equal(r.stdout, "", "nothing printed on stdout");
  }
  assert.equal(netctxState(), state);
});

test("through a running engine: the same view, and the same error", async () => {
  const engine = await startEngine();
  try {
    const view = netctxJson<StatsView>("stats");
    assert.deepEqual(
      view.contexts.map((c) => c.name),
      ["c2", "cs"],
    );
    const r = netctx("stats", "nosuch");
    assert.notEqual(r.code, 0);
    assert.match(r.stderr.trim(), /^error: context "nosuch" does not exist$/);
    // The engine's log comes through the event loop, which spawnSync held up.
    await waitFor(() => /GET \/v1\/stats\?name=nosuch -> 404/.test(engine.log()), 5000);
    assert.match(engine.log(), /GET \/v1\/stats\?name=nosuch -> 404/);
  } finally {
    await engine.stop();
  }
});
