/**
 * Drift (issue 17): what a record declares and the kernel lost is seen by `ls` and `inspect` (the context is
 * "degraded", naming what is missing), listed by `gc --dry-run`, put back by `gc` or `repair`, and by a resident
 * engine on its own within its check interval.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { netctx, netctxJson, netctxOk, startEngine } from "../utils/cli.ts";
import { addressesOf } from "../utils/kernel-oracle.ts";
import { sh } from "../utils/shell.ts";
import { waitFor } from "../utils/wait.ts";

interface View {
  name: string;
  status: string;
  addresses: string[];
  interfaces: { hostIfname?: string }[];
  missing?: string[];
}

const statusOf = () => Object.fromEntries(netctxJson<View[]>("ls", "--json").map((v) => [v.name, v.status]));
const v4 = (v: View) => v.addresses.find((a) => !a.includes(":"))!;

test("a host network's device deleted by hand: its contexts show degraded, gc makes it again with their addresses", () => {
  netctxOk("network", "create", "dh", "--driver", "host", "--subnet", "10.95.0.0/24");
  netctxOk("network", "create", "db", "--driver", "bridge", "--subnet", "10.96.0.0/24");
  netctxOk("create", "s5", "--level", "socket", "--network", "dh");
  netctxOk("create", "t5", "--level", "l3", "--network", "dh");
  netctxOk("create", "b5", "--level", "l2", "--network", "db");
  assert.deepEqual(statusOf(), { s5: "ready", t5: "ready", b5: "ready" });
  const s5 = netctxJson<View>("inspect", "s5");

  sh("ip link del nc-dh");
  assert.deepEqual(statusOf(), { s5: "degraded", t5: "degraded", b5: "ready" });
  const seen = netctxJson<View>("inspect", "s5");
  assert.equal(seen.status, "degraded");
  assert.ok(seen.missing?.includes("network dh is missing"), JSON.stringify(seen.missing));
  // A bind to its address fails while the address is gone (the context's processes see the drift too).
  const bind = [
    "exec",
    "s5",
    "--",
    "python3",
    "-c",
    `import socket; socket.socket().bind(("${v4(s5).split("/")[0]}", 0))`,
  ];
  assert.notEqual(netctx(...bind).code, 0, "no address, no bind");

  const plan = netctxJson<{ actions: { action: string; object: string }[] }>("gc", "--dry-run", "--json");
  assert.ok(
    plan.actions.some((a) => a.action === "recreate" && a.object === "network dh"),
    JSON.stringify(plan.actions),
  );
  netctxOk("gc");
  assert.deepEqual(statusOf(), { s5: "ready", t5: "ready", b5: "ready" });
  assert.ok(addressesOf(undefined, "nc-dh").includes(v4(s5)), "s5's address is back on the device");
  netctxOk(...bind);
  assert.deepEqual(netctxJson<{ actions: unknown[] }>("gc", "--dry-run", "--json").actions, [], "converged");
});

test("a guard removed behind netctx's back: degraded until repair puts it back", () => {
  const b5 = netctxJson<View>("inspect", "b5");
  const port = b5.interfaces[0]?.hostIfname;
  assert.ok(port);
  sh(`nft delete element bridge netctx as_ports '{ "${port}" }'`);
  const seen = netctxJson<View>("inspect", "b5");
  assert.equal(seen.status, "degraded");
  assert.ok(seen.missing?.includes(`antispoof port ${port} is missing`), JSON.stringify(seen.missing));
  assert.equal(statusOf()["s5"], "ready", "only the context that lost something");
  netctxOk("repair");
  assert.equal(netctxJson<View>("inspect", "b5").status, "ready");
});

test("the resident engine finds and repairs drift on its own, and says what it did", async () => {
  const engine = await startEngine({ args: ["--check-interval", "1"] });
  try {
    sh("ip link del nc-dh");
    await waitFor(() => engine.log().includes("gc: recreate network dh"), 10_000);
    assert.match(engine.log(), /gc: recreate network dh \(its device nc-dh is missing\)/);
    await waitFor(() => statusOf()["s5"] === "ready", 10_000);
    assert.deepEqual(statusOf(), { s5: "ready", t5: "ready", b5: "ready" });
  } finally {
    await engine.stop();
  }
  const bad = netctx("serve", "--check-interval", "soon");
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /check-interval/);
});

test("an l3 context's rule and table route removed by hand are seen and made again", () => {
  const t5 = netctxJson<View & { table: number }>("inspect", "t5");
  const addr = v4(t5).split("/")[0]!;
  sh(`ip rule del pref 1000 from ${addr} table ${t5.table}`);
  sh(`ip route del 10.95.0.0/24 table ${t5.table}`);
  const seen = netctxJson<View>("inspect", "t5");
  assert.equal(seen.status, "degraded");
  assert.ok(
    seen.missing?.includes(`rule from ${addr}/32 table ${t5.table} is missing`),
    JSON.stringify(seen.missing),
  );
  assert.ok(
    seen.missing?.some((m) => m.startsWith("route 10.95.0.0/24 table")),
    JSON.stringify(seen.missing),
  );
  netctxOk("gc");
  assert.equal(netctxJson<View>("inspect", "t5").status, "ready");
  assert.match(
    sh(`ip rule show pref 1000`),
    new RegExp(`from ${addr.replaceAll(".", "\\.")} lookup ${t5.table}`),
  );
  assert.match(sh(`ip route show table ${t5.table}`), /10\.95\.0\.0\/24 dev nc-dh/);
});
