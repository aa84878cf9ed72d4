/**
 * The overlay's member guard as a part of `table inet netctx` (src/firewall/overlay-members.ts): made on first use,
 * changed element by element, kept by another part's rebuild and by gc's reconcile, mended by its own sync, and
 * removed alone. Its effect on the wire is tested across hosts in test/overlay/datapath.test.ts.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, test } from "node:test";
import type { FirewallAction } from "../../src/firewall/firewall.ts";
import { dropMemberGuard, syncMembers } from "../../src/firewall/overlay-members.ts";
import { Host } from "../../src/host.ts";
import { testConfig } from "../utils/config.ts";
import { nftSet, nftTable } from "../utils/kernel-oracle.ts";

const host = Host.open(testConfig());
after(() => host.close());

const nft = (...args: string[]) => execFileSync("nft", args, { encoding: "utf8" });
const rulesOf = (chain: string) =>
  nftTable().filter((o) => (o.rule as { chain?: string } | undefined)?.chain === chain).length;
const members = () => [...nftSet("ov_members4"), ...nftSet("ov_members6")];

test("first sync makes the part; later ones change only the elements that differ", () => {
  const first = syncMembers(host, ["192.0.2.1", "192.0.2.2", "2001:db8::1"]);
  assert.deepEqual(first, { added: 4, removed: 0 }, "three addresses and port 4789");
  assert.deepEqual(members(), ["192.0.2.1", "192.0.2.2", "2001:db8::1"]);
  assert.deepEqual(nftSet("ov_ports"), ["4789"]);
  assert.equal(rulesOf("overlay_in"), 2);
  const chain = nftTable().find((o) => (o.chain as { name?: string } | undefined)?.name === "overlay_in");
  const hooked = chain?.chain as { hook: string; prio: number } | undefined;
  assert.deepEqual([hooked?.hook, hooked?.prio], ["input", -300]);
  assert.deepEqual(syncMembers(host, ["192.0.2.1", "192.0.2.2", "2001:db8::1"]), { added: 0, removed: 0 });
  assert.deepEqual(syncMembers(host, ["192.0.2.1", "192.0.2.3", "2001:db8::1"]), { added: 1, removed: 1 });
  assert.deepEqual(members(), ["192.0.2.1", "192.0.2.3", "2001:db8::1"]);
  assert.throws(() => syncMembers(host, ["192.0.2.300"]), /addresses\[0\]/);
});

test("a table rebuilt by gc keeps the members; a damaged part is mended by its own sync", () => {
  nft("flush", "chain", "inet", "netctx", "overlay_in");
  let actions: FirewallAction[] = [];
  host.firewall((fw) => {
    actions = fw.reconcile({ networks: [], interfaces: new Map(), guards: [], publications: [] });
  });
  assert.ok(actions.some((a) => a.action === "rebuild"));
  assert.equal(rulesOf("overlay_in"), 2, "the chain came back with its rules");
  assert.deepEqual(members(), ["192.0.2.1", "192.0.2.3", "2001:db8::1"], "and the sets with their members");

  nft("flush", "chain", "inet", "netctx", "overlay_in");
  nft("delete", "set", "inet", "netctx", "ov_members6");
  const mended = syncMembers(host, ["192.0.2.1", "192.0.2.3", "2001:db8::1"]);
  assert.deepEqual(mended, { added: 4, removed: 0 }, "written anew after the rebuild");
  assert.deepEqual(members(), ["192.0.2.1", "192.0.2.3", "2001:db8::1"]);
  assert.equal(rulesOf("overlay_in"), 2);
});

test("dropMemberGuard takes the part out and leaves the table", () => {
  dropMemberGuard(host);
  assert.equal(rulesOf("overlay_in"), 0);
  assert.deepEqual(members(), []);
  assert.ok(
    nftTable().some((o) => o.set),
    "the NAT part's sets stay",
  );
  dropMemberGuard(host);
});
