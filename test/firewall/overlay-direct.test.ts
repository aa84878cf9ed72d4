/**
 * The direct-routing paths of internal overlay networks in `table inet netctx` (src/firewall/overlay-direct.ts):
 * written element by element, left alone by the NAT part's own changes, kept by gc's rebuild, refused whole on bad
 * input, and never a rule more however many peers. Their effect on the wire: test/cluster/overlay-direct-internal.test.ts.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, test } from "node:test";
import { type FirewallAction, RULE_COUNT } from "../../src/firewall/firewall.ts";
import { type DirectPath, syncDirectPaths } from "../../src/firewall/overlay-direct.ts";
import { Host } from "../../src/host.ts";
import { testConfig } from "../utils/config.ts";
import { nftSet } from "../utils/kernel-oracle.ts";

const host = Host.open(testConfig());
after(() => host.close());

const nft = (...args: string[]) => execFileSync("nft", args, { encoding: "utf8" });
const sets = () => ({
  out4: nftSet("direct_out4"),
  in4: nftSet("direct_in4"),
  out6: nftSet("direct_out6"),
  in6: nftSet("direct_in6"),
});

const peer = (third: number, mac?: string): DirectPath => ({
  subnet: "10.84.0.0/16",
  block: `10.84.${third}.0/24`,
  underlay: `192.0.2.${third}`,
  ...(mac ? { underlayMac: mac } : {}),
});

test("the first sync writes the paths; later ones only what differs; a peer without a MAC gets no way in", () => {
  assert.equal(syncDirectPaths(host, []).added, 0, "nothing to hold: no table is made for it");
  const first = syncDirectPaths(host, [
    peer(2, "02:AA:00:00:00:02"),
    peer(3),
    {
      subnet: "fd84::/48",
      block: "fd84:0:0:2::/64",
      underlay: "2001:db8::2",
      underlayMac: "02:aa:00:00:00:02",
    },
  ]);
  assert.deepEqual(first, { added: 5, removed: 0 });
  const s = sets();
  assert.equal(s.out4.length, 2);
  assert.equal(s.in4.length, 1, "only the peer whose record has a MAC may send in");
  assert.equal(s.out6.length, 1);
  assert.equal(s.in6.length, 1);
  assert.deepEqual(syncDirectPaths(host, [peer(2, "02:aa:00:00:00:02"), peer(3)]), {
    added: 0,
    removed: 2,
  });
  assert.deepEqual(syncDirectPaths(host, [peer(2, "02:aa:00:00:00:02"), peer(3)]), { added: 0, removed: 0 });
  assert.deepEqual(syncDirectPaths(host, [peer(2, "02:aa:00:00:00:22"), peer(3)]), { added: 1, removed: 1 });
});

test("bad input: one error naming the field, and nothing changes", () => {
  const before = sets();
  assert.throws(() => syncDirectPaths(host, [peer(2, "02:aa"), peer(4)]), /paths\[0\]\.underlayMac/);
  assert.throws(() => syncDirectPaths(host, [{ ...peer(4), underlay: "2001:db8::4" }]), /paths\[0\]/);
  assert.deepEqual(sets(), before);
});

test("the NAT part's own changes leave the paths; gc's rebuild keeps them; the rule count never grows", () => {
  const before = sets();
  host.firewall((fw) =>
    fw.addNetwork({ name: "other", subnets: ["10.99.0.0/24"], nat: false, internal: true }),
  );
  assert.deepEqual(sets(), before, "a network's elements went in without touching the paths");
  nft("flush", "chain", "inet", "netctx", "forward");
  let actions: FirewallAction[] = [];
  host.firewall((fw) => {
    actions = fw.reconcile({
      networks: [{ name: "other", subnets: ["10.99.0.0/24"], nat: false, internal: true }],
      interfaces: new Map(),
      guards: [],
      publications: [],
    });
  });
  assert.ok(actions.some((a) => a.action === "rebuild"));
  assert.deepEqual(sets(), before, "rebuilt with the paths");
  const many = Array.from({ length: 200 }, (_, i) =>
    peer(i + 1, `02:aa:00:00:01:${(i % 256).toString(16).padStart(2, "0")}`),
  );
  syncDirectPaths(host, many);
  assert.equal(nftSet("direct_out4").length, 200);
  let rules = 0;
  host.firewall((fw) => {
    rules = fw.ruleCount();
  });
  assert.equal(rules, RULE_COUNT);
  assert.deepEqual(syncDirectPaths(host, []), { added: 0, removed: 400 });
});
