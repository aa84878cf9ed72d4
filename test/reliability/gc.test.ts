/**
 * gc removes what carries netctx's marks and no record owns, lists it first with --dry-run, drops records whose
 * kernel anchor is gone, recreates a missing bridge, and never touches anything without our marks.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { Store } from "../../src/state/store.ts";
import { netctxJson, netctxOk } from "../utils/cli.ts";
import { testConfig } from "../utils/config.ts";
import { ping } from "../utils/ping.ts";
import { sh } from "../utils/shell.ts";
import { disagreements, netctxLinks, openStore } from "../utils/state-oracle.ts";
import { eventually } from "../utils/wait.ts";

const CG = process.env.NETCTX_CGROUP_PARENT!;

interface Report {
  actions: { action: string; object: string; error?: string }[];
}

function check(): string[] {
  const store = openStore();
  try {
    return eventually(() => disagreements(store, CG, { links: ["other0"], tables: ["2000"] }), [], 3000);
  } finally {
    store.close();
  }
}

test("orphans with our marks go, foreign objects stay, dry-run only lists", () => {
  netctxOk("network", "create", "gb", "--driver", "bridge", "--subnet", "10.93.0.0/24");
  netctxOk("network", "create", "gh", "--driver", "host", "--subnet", "10.94.0.0/24");
  netctxOk("create", "g1", "--level", "l2", "--network", "gb");
  netctxOk("create", "g2", "--level", "socket", "--network", "gh");
  // Our marks, nobody's record:
  sh(
    "ip link add nc-stray type bridge && ip link add grouped type bridge && ip link set grouped group 28259",
  );
  sh("ip netns add netctx-stray");
  mkdirSync(join(CG, "stray"));
  sh("ip addr add 10.93.0.77/24 dev nc-gb");
  sh("ip rule add pref 1000 from 10.94.0.99 table 1999");
  sh("ip route add 10.55.0.0/24 dev nc-gh table 1999");
  // Foreign objects: no mark.
  sh("ip link add other0 type bridge && ip addr add 10.66.0.1/24 dev other0 && ip link set other0 up");
  sh("ip netns add foreign");
  sh("ip rule add pref 1001 from 10.66.0.9 table 2000 && ip route add 10.67.0.0/24 dev other0 table 2000");
  sh(
    "nft add table inet foreign && nft add set inet foreign s '{ type ipv4_addr; }' && nft add element inet foreign s '{ 10.66.0.9 }'",
  );
  const foreignBefore = sh(
    "ip link show other0; ip -4 addr show other0; ip rule | grep -v ^1000:; ip route show table 2000; nft list table inet foreign; ls /run/netns | grep -v netctx",
  );

  const dry = netctxJson<Report>("gc", "--dry-run");
  const objects = dry.actions.map((a) => a.object).sort();
  for (const o of [
    "link nc-stray",
    "link grouped",
    "netns netctx-stray",
    `cgroup ${join(CG, "stray")}`,
    "address 10.93.0.77/24 dev nc-gb",
  ])
    assert.ok(objects.includes(o), `dry-run lists ${o}: ${objects.join(", ")}`);
  assert.ok(objects.some((o) => o.startsWith("rule ") && o.includes("table 1999")));
  assert.ok(objects.some((o) => o.startsWith("route 10.55.0.0/24")));
  assert.ok(netctxLinks().includes("nc-stray"), "dry-run did nothing");
  assert.ok(existsSync(join(CG, "stray")));

  const done = netctxJson<Report>("gc");
  assert.deepEqual(
    done.actions.filter((a) => a.error),
    [],
  );
  assert.deepEqual(check(), []);
  assert.equal(
    sh(
      "ip link show other0; ip -4 addr show other0; ip rule | grep -v ^1000:; ip route show table 2000; nft list table inet foreign; ls /run/netns | grep -v netctx",
    ),
    foreignBefore,
  );
  assert.deepEqual(netctxJson<Report>("gc", "--dry-run").actions, [], "converged");
  assert.ok(ping("/run/netns/netctx-g1", "10.93.0.1"));
});

test("records whose anchor is gone are dropped with their leases; a missing bridge is recreated with its ports", () => {
  sh("umount /run/netns/netctx-g1 && rm /run/netns/netctx-g1");
  sh(`rmdir ${join(CG, "g2")} 2>/dev/null || true`);
  netctxOk("create", "g3", "--level", "l2", "--network", "gb");
  sh("ip link del nc-gb");
  const done = netctxJson<Report>("gc");
  const objects = done.actions.map((a) => `${a.action} ${a.object}`);
  assert.ok(objects.includes("drop context g1"), objects.join(", "));
  assert.ok(objects.includes("recreate network gb"), objects.join(", "));
  const store = Store.open(testConfig().stateDir);
  try {
    assert.equal(store.getContext("g1"), undefined);
    assert.deepEqual(store.leases({ owner: "g1" }), []);
  } finally {
    store.close();
  }
  assert.deepEqual(check(), []);
  assert.ok(
    ping("/run/netns/netctx-g3", "10.93.0.1") || ping("/run/netns/netctx-g3", "10.93.0.1"),
    "g3 works on the recreated bridge",
  );
});
