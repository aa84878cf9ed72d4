/**
 * Drift (issue 17): what a record declares and the kernel lost is seen by `ls` and `inspect` (the context is
 * "degraded", naming what is missing), listed by `gc --dry-run`, put back by `gc` or `repair`, and by a resident
 * engine on its own within its check interval.
 */
import assert from "node:assert/strict";
import { basename } from "node:path";
import { test } from "node:test";
import { netctx, netctxJson, netctxOk, startEngine } from "../utils/cli.ts";
import { cniOk } from "../utils/cni-runtime.ts";
import { addressesOf } from "../utils/kernel-oracle.ts";
import { addNetns, delNetns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";
import { sh } from "../utils/shell.ts";
import { openStore } from "../utils/state-oracle.ts";
import { waitFor } from "../utils/wait.ts";

interface View {
  name: string;
  status: string;
  addresses: string[];
  netns?: string;
  interfaces: { name: string; hostIfname?: string; gateways: string[] }[];
  missing?: string[];
  labels?: Record<string, string>;
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

type Plan = { actions: { action: string; object: string; reason: string }[] };

/**
 * One object netctx made inside an l2 context's netns, deleted by hand: `ls` names it, `gc --dry-run --json` lists it
 * with its context, `fix` puts it back, the context reaches its gateway again and the next dry run is empty.
 */
function lostInside(
  name: string,
  del: (ns: string, gw: string, addr: string) => string,
  object: RegExp,
  fix: string,
  action = "add",
) {
  const v = netctxJson<View>("inspect", name);
  const ns = basename(v.netns!);
  const gw = v.interfaces[0]!.gateways[0]!;
  assert.ok(ping(v.netns!, gw), `${name} reaches ${gw} before`);
  sh(del(ns, gw, v4(v)));
  const what = `${del(ns, gw, v4(v))}`;
  const row = netctxJson<View[]>("ls", "--json").find((x) => x.name === name)!;
  assert.equal(row.status, "degraded", what);
  const inNs = `in netns ${ns}`;
  assert.ok(
    row.missing?.some((m) => object.test(m) && m.endsWith(`${inNs} is missing`)),
    `${what}: ${JSON.stringify(row.missing)}`,
  );
  const plan = netctxJson<Plan>("gc", "--dry-run", "--json");
  assert.ok(
    plan.actions.some(
      (a) =>
        a.action === action &&
        object.test(a.object) &&
        a.object.endsWith(inNs) &&
        a.reason.includes(`context ${name}`),
    ),
    `${what}: ${JSON.stringify(plan.actions)}`,
  );
  netctxOk(fix);
  assert.equal(statusOf()[name], "ready", `${what}: ${fix} put it back`);
  assert.ok(ping(v.netns!, gw, { tries: 3 }), `${what}: ${name} reaches ${gw} after ${fix}`);
  assert.deepEqual(netctxJson<Plan>("gc", "--dry-run", "--json").actions, [], `${what}: converged`);
}

const esc = (s: string) => s.replaceAll(".", "\\.");

test("inside a bridge context: a lost address or default route is seen, listed and made again", () => {
  const b5 = netctxJson<View>("inspect", "b5");
  const addr = v4(b5);
  lostInside(
    "b5",
    (ns, _gw, a) => `ip -n ${ns} addr del ${a} dev eth0`,
    new RegExp(`^address ${esc(addr)} dev eth0 `),
    "repair",
  );
  lostInside(
    "b5",
    (ns) => `ip -n ${ns} addr flush dev eth0`,
    new RegExp(`^address ${esc(addr)} dev eth0 `),
    "gc",
  );
  lostInside(
    "b5",
    (ns) => `ip -n ${ns} route del default`,
    /^route default via 10\.96\.0\.1 dev eth0 /,
    "gc",
  );
});

test("inside a routed context: a lost address, default route, onlink gateway route or gateway neighbour comes back", () => {
  netctxOk("network", "create", "dr", "--driver", "routed", "--subnet", "10.97.0.0/24");
  netctxOk("create", "r5", "--level", "l2", "--network", "dr");
  const addr = v4(netctxJson<View>("inspect", "r5"));
  const gw = "10\\.97\\.0\\.1";
  lostInside(
    "r5",
    (ns, _gw, a) => `ip -n ${ns} addr del ${a} dev eth0`,
    new RegExp(`^address ${esc(addr)} dev eth0 `),
    "gc",
  );
  lostInside(
    "r5",
    (ns) => `ip -n ${ns} route del default`,
    new RegExp(`^route default via ${gw} dev eth0 `),
    "repair",
  );
  lostInside(
    "r5",
    (ns, g) => `ip -n ${ns} route del ${g}/32 dev eth0`,
    new RegExp(`^route ${gw}/32 dev eth0 scope link `),
    "gc",
  );
  lostInside(
    "r5",
    (ns, g) => `ip -n ${ns} neigh del ${g} dev eth0`,
    new RegExp(`^neighbour ${gw} lladdr \\S+ dev eth0 `),
    "repair",
  );
});

test("what root inside a context added itself stays: the context owns its netns", () => {
  const ns = basename(netctxJson<View>("inspect", "b5").netns!);
  sh(
    `ip -n ${ns} addr add 10.199.0.9/32 dev eth0 && ip -n ${ns} route add 10.198.0.0/24 via 10.96.0.1 dev eth0`,
  );
  assert.equal(statusOf()["b5"], "ready");
  assert.deepEqual(netctxJson<Plan>("gc", "--dry-run", "--json").actions, []);
  netctxOk("gc");
  netctxOk("repair");
  assert.match(sh(`ip -n ${ns} addr show dev eth0`), /10\.199\.0\.9\/32/);
  assert.match(sh(`ip -n ${ns} route show`), /10\.198\.0\.0\/24 via 10\.96\.0\.1/);
});

test("a CNI-made context's netns is the runtime's: gc does not look into it", () => {
  const conf = { cniVersion: "1.0.0", name: "dcni", type: "netctx", subnets: ["10.94.0.0/24"] };
  const path = addNetns("rt1");
  cniOk("ADD", conf, { id: "rt1", netns: path });
  sh("ip -n rt1 route del default");
  assert.ok(!Object.values(statusOf()).includes("degraded"), JSON.stringify(statusOf()));
  assert.deepEqual(netctxJson<Plan>("gc", "--dry-run", "--json").actions, []);
  netctxOk("gc");
  assert.doesNotMatch(sh("ip -n rt1 route show"), /default/, "the runtime's netns is left as it is");
  cniOk("DEL", conf, { id: "rt1", netns: path });
  delNetns("rt1");
});

test("a context's interface deleted inside its netns: its veth is made again with all it carried", () => {
  for (const name of ["b5", "r5"]) {
    const port = netctxJson<View>("inspect", name).interfaces[0]!.hostIfname!;
    lostInside(
      name,
      (ns) => `ip -n ${ns} link del eth0`,
      new RegExp(`^link ${port} and eth0 `),
      name === "b5" ? "gc" : "repair",
      "recreate",
    );
  }
  const b5 = netctxJson<View>("inspect", "b5").interfaces[0]!.hostIfname!;
  sh(`nft list set bridge netctx as_ports | grep -q ${b5}`);
});

/**
 * A resident engine answers `ls` from the drift reading it keeps (engine/drift-watch.ts): a change by hand, in the
 * host's namespace, inside a context's, in nft or in the neighbour table, must reach the very next `ls` (the engine
 * reads what the kernel announced before it answers), and so must repair's fix, made by another process.
 */
test("a resident engine's kept reading: the next ls sees a change by hand, and repair's fix", async () => {
  const engine = await startEngine({ args: ["--check-interval", "0"] });
  try {
    const seen = (change: string, name: string) => {
      // Twice: the second answer comes from the kept reading.
      assert.equal(statusOf()[name], "ready", `before ${change}`);
      assert.equal(statusOf()[name], "ready", `before ${change}, again`);
      sh(change);
      assert.equal(statusOf()[name], "degraded", `the ls right after ${change}`);
      netctxOk("repair");
      assert.equal(statusOf()[name], "ready", `the ls right after repair of ${change}`);
    };
    // A macvlan context's namespace is one the kernel gives no id in the host's (no veth peer links them): the
    // engine gives it one, or nothing inside it would be heard.
    sh("ip link add dmp0 type veth peer name dmp1 && ip link set dmp0 up");
    netctxOk(
      "network",
      "create",
      "dm",
      "--driver",
      "macvlan",
      "--parent",
      "dmp0",
      "--subnet",
      "10.93.0.0/24",
    );
    netctxOk("create", "m5", "--level", "l2", "--network", "dm");
    const m5 = netctxJson<View>("inspect", "m5");
    const b5 = netctxJson<View>("inspect", "b5");
    const r5 = netctxJson<View>("inspect", "r5");
    const t5 = netctxJson<View & { table: number }>("inspect", "t5");
    seen(`ip -n ${basename(m5.netns!)} addr del ${v4(m5)} dev eth0`, "m5");
    seen(`ip -n ${basename(b5.netns!)} route del default`, "b5");
    seen(`ip -n ${basename(r5.netns!)} neigh del ${r5.interfaces[0]!.gateways[0]} dev eth0`, "r5");
    seen("ip link del nc-dh", "s5");
    seen(`ip rule del pref 1000 from ${v4(t5).split("/")[0]} table ${t5.table}`, "t5");
    seen(`nft delete element bridge netctx as_ports '{ "${b5.interfaces[0]!.hostIfname}" }'`, "b5");
    // The records another process writes (here this test, through the store): the kept listing follows them too.
    const labelsOf = () => netctxJson<View[]>("ls", "--json").find((v) => v.name === "b5")?.labels;
    assert.equal(labelsOf()?.["drift"], undefined);
    const store = openStore();
    try {
      const record = store.getContext("b5")!;
      store.updateContext({
        ...record,
        spec: { ...record.spec, labels: { ...record.spec.labels, drift: "kept" } },
      });
    } finally {
      store.close();
    }
    assert.equal(labelsOf()?.["drift"], "kept", "a record written by another process");
    netctxOk("rm", "m5");
    netctxOk("network", "rm", "dm");
  } finally {
    await engine.stop();
    sh("ip link del dmp0 2>/dev/null || true");
  }
});
