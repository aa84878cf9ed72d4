/**
 * One owner for our nft tables (src/firewall/firewall.ts): a part that finds `table inet netctx` damaged rebuilds it
 * with every part's elements (NAT, anti-spoofing, published ports), so nothing is left wiped for gc to put back;
 * gc's reconcile mends every part at once and then has nothing left to do.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { netctxJson, netctxOk } from "../utils/cli.ts";

interface Report {
  actions: { action: string; object: string; error?: string }[];
}

const nft = (...args: string[]) => execFileSync("nft", args, { encoding: "utf8" });

/** A set's or map's elements as nft -j lists them, one JSON text each ([] without it). */
function elements(family: string, name: string): string[] {
  const objects = JSON.parse(nft("-j", "list", "table", family, "netctx")).nftables as Record<
    string,
    { name?: string; elem?: unknown[] }
  >[];
  const found = objects.map((o) => o["set"] ?? o["map"]).find((s) => s?.name === name);
  return (found?.elem ?? []).map((e) => JSON.stringify(e)).sort();
}

function parts(): Record<string, string[]> {
  return {
    ports: elements("inet", "as_ports"),
    macs: elements("inet", "as_mac"),
    arp: elements("arp", "as_ip4"),
    published: elements("inet", "pub4"),
    nets: elements("inet", "nets4"),
  };
}

let before: Record<string, string[]> = {};

test("a NAT change that finds the table damaged keeps the anti-spoofing and publishing elements", () => {
  netctxOk("network", "create", "ow", "--driver", "routed", "--subnet", "10.91.0.0/24");
  netctxOk("create", "o1", "--level", "l2", "--network", "ow", "--publish", "8080:80");
  before = parts();
  assert.match(before["ports"]!.join(" "), /nc-o1/);
  assert.equal(before["published"]!.length, 1);
  const rules = nft("list", "table", "inet", "netctx");

  nft("flush", "chain", "inet", "netctx", "postrouting");
  // Registering a network reads the table, finds it damaged and rebuilds it: every part comes back at once.
  netctxOk("network", "create", "ow2", "--driver", "bridge", "--subnet", "10.92.0.0/24");
  const after = parts();
  assert.deepEqual({ ...after, nets: [] }, { ...before, nets: [] });
  assert.equal(after["nets"]!.length, 2);
  netctxOk("network", "rm", "ow2");
  assert.equal(nft("list", "table", "inet", "netctx"), rules, "the same chains, rules and elements");
  assert.deepEqual(netctxJson<Report>("gc", "--dry-run").actions, [], "nothing left for gc");
});

test("gc mends a damaged table in one go, every part of it, and then has nothing left to do", () => {
  nft("flush", "chain", "inet", "netctx", "publish_pre");
  const dry = netctxJson<Report>("gc", "--dry-run").actions.map((a) => `${a.action} ${a.object}`);
  for (const expected of [
    "rebuild nft table inet netctx",
    "add nft element nets4 10.91.0.0/24",
    "add antispoof port nc-o1",
    "add published ports of o1",
  ])
    assert.ok(dry.includes(expected), `${expected}: ${dry.join(", ")}`);
  assert.ok(
    !dry.some((a) => a.includes("table arp")),
    "the arp table is intact: only its elements are looked at",
  );

  const done = netctxJson<Report>("gc").actions;
  assert.deepEqual(
    done.map((a) => `${a.action} ${a.object}`),
    dry,
  );
  assert.deepEqual(
    done.filter((a) => a.error),
    [],
  );
  assert.deepEqual(parts(), before);
  assert.deepEqual(netctxJson<Report>("gc", "--dry-run").actions, [], "converged");
});

test("a port no record owns goes from every table; one a ready context misses comes back", () => {
  nft("add", "element", "arp", "netctx", "as_ports", '{ "nc-stray" }');
  nft("delete", "element", "inet", "netctx", "as_ports", '{ "nc-o1" }');
  const done = netctxJson<Report>("gc").actions.map((a) => `${a.action} ${a.object}`);
  assert.deepEqual(done, ["remove antispoof port nc-stray", "add antispoof port nc-o1"]);
  assert.deepEqual(parts(), before);
  netctxOk("rm", "o1");
  netctxOk("network", "rm", "ow");
});
