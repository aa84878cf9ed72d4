/**
 * A store owns only what it marked (issue 17): gc with a mistyped --state-dir refuses and changes nothing, and a
 * second store on the same host converges without touching the first store's links, netns or cgroups.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { netctx, netctxJson, netctxOk, netctxState } from "../utils/cli.ts";
import { kernelSnapshot, links, rules } from "../utils/kernel-oracle.ts";
import { sh } from "../utils/shell.ts";

const CG = process.env.NETCTX_CGROUP_PARENT!;
const cgroups = () => readdirSync(CG).sort();
/** The kernel as a store sees it, nft aside (each store's tables are its own: test/firewall/two-stores). */
const kernelWithoutNft = () => {
  const { nft: _nft, ...rest } = JSON.parse(kernelSnapshot()) as Record<string, unknown>;
  return JSON.stringify({ ...rest, cgroups: cgroups(), rules4: rules(4), rules6: rules(6) });
};
const statuses = (...dir: string[]) =>
  Object.fromEntries(
    netctxJson<{ name: string; status: string }[]>(...dir, "ls", "--json").map((v) => [v.name, v.status]),
  );

test("an empty store also refuses while objects with our marks but no store's exist (made by hand, or before marks), before any store has any", () => {
  const empty = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH!, "wrong-"));
  sh("ip link add nc-byhand type bridge");
  try {
    const r = netctx("--state-dir", empty, "gc");
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /link nc-byhand carries netctx's marks but no store's/);
    assert.ok(links().some((l) => l.ifname === "nc-byhand"));
  } finally {
    sh("ip link del nc-byhand");
  }
});

test("gc with an empty store refuses while another store's objects exist, naming it, and changes nothing", () => {
  netctxOk("network", "create", "appnet", "--driver", "bridge", "--subnet", "10.20.0.0/24", "--nat");
  netctxOk("network", "create", "hn", "--driver", "host", "--subnet", "10.21.0.0/24");
  netctxOk("create", "c1", "--level", "l2", "--network", "appnet");
  netctxOk("create", "s1", "--level", "socket", "--network", "hn");
  netctxOk("create", "t1", "--level", "l3", "--network", "hn");
  const state = netctxState();
  const kernel = kernelWithoutNft();
  const nft = JSON.stringify(JSON.parse(kernelSnapshot()).nft);

  const empty = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH!, "wrong-"));
  for (const verb of ["gc", "repair"]) {
    const r = netctx("--state-dir", empty, verb);
    assert.notEqual(r.code, 0, verb);
    assert.match(r.stderr, /state-dir/, verb);
    assert.match(r.stderr, new RegExp(`belongs to the store at ${process.env.NETCTX_STATE_DIR}`), verb);
    assert.equal(r.stderr.trim().split("\n").length, 1, "one line");
  }
  const dry = netctx("--state-dir", empty, "gc", "--dry-run");
  assert.notEqual(dry.code, 0, "a dry run says the same");
  assert.equal(kernelWithoutNft(), kernel, "the kernel is as it was");
  assert.equal(JSON.stringify(JSON.parse(kernelSnapshot()).nft), nft, "and so are the nft tables");
  assert.equal(netctxState(), state, "the real store is as it was");
  assert.deepEqual(statuses(), { c1: "ready", s1: "ready", t1: "ready" });
  assert.deepEqual(
    netctxJson<{ actions: unknown[] }>("gc", "--dry-run", "--json").actions,
    [],
    "nothing for it to do",
  );
});
test("a second store on the same host converges without touching the first store's links, netns or cgroups", () => {
  const other = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH!, "other-"));
  const b = ["--state-dir", other];
  netctxOk(...b, "network", "create", "bnet", "--driver", "bridge", "--subnet", "10.30.0.0/24");
  netctxOk(...b, "network", "create", "bhn", "--driver", "host", "--subnet", "10.31.0.0/24");
  netctxOk(...b, "create", "b1", "--level", "l2", "--network", "bnet");
  netctxOk(...b, "create", "b2", "--level", "l3", "--network", "bhn");
  const kernel = kernelWithoutNft();
  const plan = netctxJson<{ actions: { object: string }[] }>(...b, "gc", "--dry-run", "--json");
  assert.deepEqual(plan.actions, [], "the first store's objects are not the second's orphans");
  netctxOk(...b, "gc");
  assert.equal(kernelWithoutNft(), kernel);
  assert.deepEqual(statuses(), { c1: "ready", s1: "ready", t1: "ready" });
  assert.deepEqual(statuses(...b), { b1: "ready", b2: "ready" });
  // And the other way round.
  assert.deepEqual(netctxJson<{ actions: unknown[] }>("gc", "--dry-run", "--json").actions, []);
  netctxOk(...b, "rm", "b1", "b2");
  netctxOk(...b, "network", "rm", "bnet", "bhn");
  assert.deepEqual(statuses(), { c1: "ready", s1: "ready", t1: "ready" });
});

test("a second store's context of a taken name is refused before it touches the first store's cgroup", () => {
  const other = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH!, "other-"));
  const b = ["--state-dir", other];
  netctxOk(...b, "network", "create", "bhn2", "--driver", "host", "--subnet", "10.32.0.0/24");
  const xattr = () =>
    sh(`python3 -c 'import os; print(os.getxattr("${CG}/t1", "user.netctx.store").decode())'`).trim();
  const mark = xattr();
  const kernel = kernelWithoutNft();
  for (const level of ["l3", "socket"]) {
    const r = netctx(...b, "create", "t1", "--level", level, "--network", "bhn2");
    assert.notEqual(r.code, 0, level);
    assert.match(r.stderr, /^error: name: cgroup \S+\/t1 already exists/, level);
  }
  assert.equal(xattr(), mark, "t1's cgroup is still the first store's");
  assert.equal(kernelWithoutNft(), kernel);
  assert.deepEqual(statuses(...b), {});
  assert.deepEqual(statuses(), { c1: "ready", s1: "ready", t1: "ready" });
  netctxOk(...b, "network", "rm", "bhn2");
});
