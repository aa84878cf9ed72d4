/**
 * A store's inet table lives as long as something needs it. Its base chains (input, forward, postrouting) hook every
 * packet of the host, so after the store's last network it goes: `network rm` deletes it, and gc deletes one a crash
 * left (the rm stopped between taking the network down and the table). The next network makes it anew, whole: its
 * context reaches the outside through NAT. Another store's table is never touched, and a refused `network rm` leaves
 * ours as it was.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { FAIL_ENV } from "../../src/pause.ts";
import { NETCTX, netctx, netctxJson, netctxOk } from "../utils/cli.ts";
import { addVethNetns, delVethNetns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";
import { must, sh } from "../utils/shell.ts";

const OUTSIDE = { name: "idle-out", hostIfname: "idle-up" };
const B_DIR = join(process.env.NETCTX_TEST_SCRATCH!, "store-b");
const B_CGROUP = join(process.env.NETCTX_CGROUP_PARENT!, "store-b");

function inBOk(...args: string[]): string {
  const r = spawnSync(NETCTX, ["--state-dir", B_DIR, ...args], {
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, NETCTX_CGROUP_PARENT: B_CGROUP },
  });
  assert.equal(r.status, 0, `netctx --state-dir B ${args.join(" ")}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** Our inet tables as the kernel lists them: name -> `nft -j` listing. */
function inetTables(): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of sh("nft list tables").split("\n")) {
    const m = line.match(/^table inet (netctx\S*)$/);
    if (m) out.set(m[1]!, must(["nft", "-j", "list", "table", "inet", m[1]!]));
  }
  return out;
}

/** Store A's table: the one of A's that `nft` lists now, besides B's. */
function tableOfA(bName: string): string | undefined {
  return [...inetTables().keys()].find((n) => n !== bName);
}

let bTable = "";

before(() => {
  mkdirSync(B_DIR, { recursive: true });
  mkdirSync(B_CGROUP, { recursive: true });
  addVethNetns({ ...OUTSIDE, hostAddresses: ["203.0.113.1/24"], addresses: ["203.0.113.2/24"] });
  // Store B first: it claims `netctx`, and its network and table stay all along.
  inBOk("network", "create", "bnet", "--driver", "bridge", "--subnet", "10.92.0.0/24", "--nat");
  bTable = [...inetTables().keys()][0]!;
  assert.ok(bTable, "store B has its table");
});

after(() => {
  netctx("rm", "-f", "ia1");
  netctx("network", "rm", "inet1");
  spawnSync(NETCTX, ["--state-dir", B_DIR, "network", "rm", "bnet"], {
    env: { ...process.env, NETCTX_CGROUP_PARENT: B_CGROUP },
  });
  delVethNetns(OUTSIDE);
  // A's gc takes an unmarked cgroup under its parent for a leftover of its own (observe.ts): B's may be gone.
  if (existsSync(B_CGROUP)) rmdirSync(B_CGROUP);
});

test("the last network's rm deletes the store's inet table; a refused rm keeps it; the next network makes it anew and NAT works", () => {
  const bBefore = inetTables().get(bTable);
  netctxOk("network", "create", "inet1", "--driver", "bridge", "--subnet", "10.91.0.0/24", "--nat");
  netctxOk("create", "ia1", "--level", "l2", "--network", "inet1");
  const aName = tableOfA(bTable);
  assert.ok(aName, "store A made its inet table");

  const held = inetTables().get(aName);
  assert.notEqual(netctx("network", "rm", "inet1").code, 0, "a network with a context is not removed");
  assert.equal(inetTables().get(aName), held, "the refused rm left the table byte for byte");

  netctxOk("rm", "ia1");
  assert.ok(inetTables().has(aName), "a context going keeps the table its network needs");
  netctxOk("network", "rm", "inet1");
  assert.equal(tableOfA(bTable), undefined, "store A's inet table went with its last network");
  assert.equal(inetTables().get(bTable), bBefore, "store B's table byte for byte");

  netctxOk("network", "create", "inet1", "--driver", "bridge", "--subnet", "10.91.0.0/24", "--nat");
  netctxOk("create", "ia1", "--level", "l2", "--network", "inet1");
  assert.ok(tableOfA(bTable), "the next network made the table anew");
  const view = netctxJson<{ netns: string }>("inspect", "ia1");
  assert.ok(ping(view.netns, "203.0.113.2", { tries: 3 }), "the context reaches the outside through NAT");
  netctxOk("rm", "ia1");
  netctxOk("network", "rm", "inet1");
  assert.equal(tableOfA(bTable), undefined);
});

test("gc deletes an idle inet table a crashed rm left, and nothing else", () => {
  const bBefore = inetTables().get(bTable);
  netctxOk("network", "create", "inet1", "--driver", "bridge", "--subnet", "10.91.0.0/24", "--nat");
  const aName = tableOfA(bTable)!;
  const crashed = spawnSync(NETCTX, ["network", "rm", "inet1"], {
    encoding: "utf8",
    env: { ...process.env, [FAIL_ENV]: "network-rm:after-destroy" },
  });
  assert.notEqual(crashed.status, 0, "the injected failure stops the rm");
  assert.ok(inetTables().has(aName), "the rm stopped before the table");
  const gc = netctxOk("gc");
  assert.match(gc, new RegExp(`nft table inet ${aName}`), gc);
  assert.equal(tableOfA(bTable), undefined, "gc deleted the idle table");
  assert.equal(inetTables().get(bTable), bBefore, "store B's table byte for byte");
  assert.equal(netctxJson<unknown[]>("network", "ls").length, 0, "gc finished the rm");
});
