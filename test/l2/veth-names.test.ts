/**
 * Host-side veth names (issue 17): a context's first veth is nc-NAME, the later ones must never be another record's
 * device. `nc-a-1` was context a's second veth and context a-1's first: whichever came second took the other's link
 * for a leftover of its own and deleted it. Both orders, through create and through apply; a context named like a
 * network (its device nc-NAME) is refused before any change; and a leftover is removed only when it carries this
 * store's mark and no record declares it.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { type CliResult, netctx, netctxJson, netctxOk } from "../utils/cli.ts";
import { addressesOf, ipLink, kernelSnapshot } from "../utils/kernel-oracle.ts";
import { contextNetns as ns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";
import { must } from "../utils/shell.ts";
import { storeState } from "../utils/state-oracle.ts";

interface View {
  interfaces: { name: string; network: string; hostIfname?: string; addresses: string[] }[];
}

const dir = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH ?? "/tmp", "veth-names-"));

netctxOk("network", "create", "vn1", "--driver", "bridge", "--subnet", "10.61.0.0/24");
netctxOk("network", "create", "vn2", "--driver", "routed", "--subnet", "10.62.0.0/24");
netctxOk("network", "create", "vn3", "--driver", "bridge", "--subnet", "10.63.0.0/24");
const GATEWAY: Record<string, string> = { vn1: "10.61.0.1", vn2: "10.62.0.1", vn3: "10.63.0.1" };

/** What a context holds on the host and inside: its host links (by ifindex) and its addresses, per interface. */
function holdings(ctx: string): string {
  const view = netctxJson<View>("inspect", ctx);
  return JSON.stringify(
    view.interfaces.map((i) => [
      i.hostIfname,
      ipLink<{ ifindex: number }>(i.hostIfname!).ifindex,
      i.name,
      addressesOf(ns(ctx), i.name),
    ]),
  );
}

/** Every network of the context answers from its gateway. */
function reachesGateways(ctx: string): void {
  for (const i of netctxJson<View>("inspect", ctx).interfaces)
    assert.ok(ping(ns(ctx), GATEWAY[i.network]!, { tries: 3 }), `${ctx} -> gateway of ${i.network}`);
}

function hostIfnames(ctx: string): string[] {
  return netctxJson<View>("inspect", ctx).interfaces.map((i) => i.hostIfname!);
}

function noGcActions(): void {
  assert.deepEqual(netctxJson<{ actions: unknown[] }>("gc", "--dry-run").actions, []);
}

function refused(r: CliResult, message: RegExp, was: string, label: string): void {
  assert.notEqual(r.code, 0, `${label}: accepted: ${r.stdout}`);
  assert.match(r.stderr, /^error: [^\n]+\n$/, `${label}: not one line: ${r.stderr}`);
  assert.match(r.stderr, message, label);
  assert.equal(storeState() + kernelSnapshot(), was, `${label}: something changed`);
}

function apply(name: string, text: string): void {
  const path = join(dir, name);
  writeFileSync(path, text);
  netctxOk("apply", path);
}

function cleanUp(...contexts: string[]): void {
  for (const c of contexts) netctxOk("rm", c);
  noGcActions();
}

test("a context on two networks, then a context named a-1: neither takes the other's link", () => {
  netctxOk("create", "a", "--level", "l2", "--network", "vn1", "--network", "vn2");
  const a = holdings("a");
  netctxOk("create", "a-1", "--level", "l2", "--network", "vn3");
  assert.equal(hostIfnames("a-1")[0], "nc-a-1", "a context's first veth is nc-NAME");
  assert.equal(hostIfnames("a")[0], "nc-a");
  assert.equal(holdings("a"), a, "a's links and addresses are untouched");
  reachesGateways("a");
  reachesGateways("a-1");
  noGcActions();
  cleanUp("a", "a-1");
});

test("a context named f-1, then f on two networks: f-1's link, addresses and connectivity are untouched", () => {
  netctxOk("create", "f-1", "--level", "l2", "--network", "vn3");
  const f1 = holdings("f-1");
  netctxOk("create", "f", "--level", "l2", "--network", "vn1", "--network", "vn2");
  assert.equal(holdings("f-1"), f1, "f-1's link and addresses are untouched");
  assert.equal(new Set([...hostIfnames("f"), ...hostIfnames("f-1")]).size, 3, "no name is held twice");
  reachesGateways("f-1");
  reachesGateways("f");
  noGcActions();
  cleanUp("f", "f-1");
});

test("through apply, both orders in one file: every context keeps its own links", () => {
  apply(
    "both.yaml",
    [
      "name: vnames",
      "contexts:",
      "  - { name: b-1, level: l2, networks: [vn3] }",
      "  - { name: b, level: l2, networks: [vn1, vn2] }",
      "  - { name: c, level: l2, networks: [vn1, vn2] }",
      "  - { name: c-1, level: l2, networks: [vn3] }",
      "",
    ].join("\n"),
  );
  const names = ["b-1", "b", "c", "c-1"].flatMap(hostIfnames);
  assert.equal(new Set(names).size, names.length, `no name is held twice: ${names}`);
  for (const c of ["b-1", "b", "c", "c-1"]) reachesGateways(c);
  noGcActions();
  cleanUp("b-1", "b", "c", "c-1");
});

test("a context whose first veth would be a network's device is refused before any change, by create and apply", () => {
  netctxOk("create", "d", "--level", "l2", "--network", "vn3");
  const d = holdings("d");
  const was = storeState() + kernelSnapshot();
  const message = /^error: name: device nc-vn3 belongs to network "vn3"\n$/;
  refused(netctx("create", "vn3", "--level", "l2", "--network", "vn1"), message, was, "create");
  const path = join(dir, "named-like-a-network.yaml");
  writeFileSync(path, "contexts:\n  - { name: vn3, level: l2, networks: [vn1] }\n");
  const inFile = /^error: contexts\[0\]: name: device nc-vn3 belongs to network "vn3"\n$/;
  const dry = netctx("apply", "--dry-run", path);
  refused(dry, inFile, was, "apply --dry-run");
  const real = netctx("apply", path);
  refused(real, inFile, was, "apply");
  assert.equal(dry.stderr, real.stderr, "the dry run refuses alike");
  assert.equal(holdings("d"), d);
  reachesGateways("d");
  cleanUp("d");
});

test("a link in the way is removed as a leftover only when it carries this store's mark and no record declares it", () => {
  // Our group, another store's mark: not ours to delete, whatever its name.
  must(["ip", "link", "add", "nc-e", "group", String(0x6e63), "type", "bridge"]);
  must(["ip", "link", "set", "nc-e", "alias", "netctx store 0123456789abcdef /var/lib/other-store"]);
  const was = storeState() + kernelSnapshot();
  refused(
    netctx("create", "e", "--level", "l2", "--network", "vn1"),
    /^error: name: device nc-e belongs to the store at \/var\/lib\/other-store/,
    was,
    "create over another store's link",
  );
  assert.equal(ipLink<{ ifname: string }>("nc-e").ifname, "nc-e", "the other store's link is still there");
  must(["ip", "link", "del", "nc-e"]);
});
