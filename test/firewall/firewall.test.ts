/** Our table against the kernel's own listing (`nft -j`): shape, idempotency, element diffs, batching, errors. */
import assert from "node:assert/strict";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { NetctxError } from "../../src/errors.ts";
import { Firewall, RULE_COUNT } from "../../src/firewall/firewall.ts";
import { Nft } from "../../src/firewall/nft.ts";
import { nftRuleCount as ruleCount } from "../utils/kernel-oracle.ts";
import { sh } from "../utils/shell.ts";

const scratch = process.env.NETCTX_TEST_SCRATCH ?? "/tmp";

function setOf(fw: Firewall, name: string): string[] {
  return (fw.elements().find((s) => s.set === name)?.elements ?? []).slice().sort();
}

/** Every set's elements in a fixed order (the kernel lists them in its own). */
function sorted(fw: Firewall): { set: string; elements: string[] }[] {
  return fw.elements().map((s) => ({ set: s.set, elements: [...s.elements].sort() }));
}

function tableExists(family: string, name: string): boolean {
  return sh("nft list tables").includes(`table ${family} ${name}\n`);
}

test("ensure creates table inet netctx with its chains; twice is fine", () => {
  const fw = new Firewall();
  fw.ensure();
  fw.ensure();
  assert.equal(tableExists("inet", "netctx"), true);
  assert.equal(ruleCount(), RULE_COUNT);
  const text = sh("nft list table inet netctx");
  assert.match(text, /type nat hook postrouting priority srcnat; policy accept;/);
  assert.match(text, /type filter hook forward priority filter; policy accept;/);
  fw.removeAll();
});

test("removeNetwork takes only the named network's elements, never another's on the same subnets (issue 17)", () => {
  // A failed `network create zz` on appnet's subnet (refused as overlapping) undoes with removeNetwork("zz"): on a
  // table two writers share, appnet's nat4, nets4, intra4 and ifaces elements must survive that.
  const fw = new Firewall();
  fw.addNetwork({ name: "appnet", subnets: ["10.20.0.0/24", "fd20::/64"], nat: true, internal: false });
  fw.addInterface("appnet", "nc-appnet");
  const before = sorted(fw);
  assert.throws(
    () => fw.addNetwork({ name: "zz", subnets: ["10.20.0.0/24"], nat: true, internal: false }),
    /overlaps 10\.20\.0\.0\/24 of network "appnet"/,
  );
  fw.removeNetwork("zz");
  assert.deepEqual(sorted(fw), before);
  assert.deepEqual(setOf(fw, "nat4"), ["10.20.0.0/24"]);
  fw.removeAll();
});

test("rule count is the same for 1 network and for 20 networks with 50 interfaces", () => {
  const fw = new Firewall();
  fw.addNetwork({ name: "n0", subnets: ["10.10.0.0/24", "fd10::/64"], nat: true, internal: false });
  fw.addInterface("n0", "br-n0");
  const one = ruleCount();
  fw.begin();
  for (let i = 1; i < 20; i++) {
    fw.addNetwork({
      name: `n${i}`,
      subnets: [`10.10.${i}.0/24`, `fd10:0:0:${i}::/64`],
      nat: i % 2 === 0,
      internal: i % 3 === 0,
    });
  }
  for (let j = 1; j < 50; j++) fw.addInterface(`n${j % 20}`, `veth-${j}`);
  fw.commit();
  assert.equal(ruleCount(), one);
  assert.equal(one, RULE_COUNT);
  assert.equal(setOf(fw, "ifaces").length, 50);
  assert.equal(setOf(fw, "nets4").length, 20);
  // One intra element per subnet; local elements only for the 15 interfaces of internal networks (n3, n6, ...).
  assert.equal(setOf(fw, "intra4").length, 20);
  assert.equal(setOf(fw, "intra6").length, 20);
  assert.equal(setOf(fw, "local4").length, 15);
  assert.equal(setOf(fw, "local6").length, 15);
  fw.removeAll();
});

test("elements: exactly what a network and its interfaces need; removing takes exactly those away", () => {
  const fw = new Firewall();
  fw.addNetwork({ name: "a", subnets: ["10.50.0.0/24", "fd50::/64"], nat: true, internal: false });
  fw.addNetwork({ name: "b", subnets: ["10.51.0.0/24"], nat: false, internal: true });
  fw.addInterface("a", "br-a");
  fw.addInterface("b", "br-b");
  fw.addInterface("b", "veth-b1");
  const before = fw.elements();
  assert.deepEqual(setOf(fw, "nets4"), ["10.50.0.0/24", "10.51.0.0/24"]);
  assert.deepEqual(setOf(fw, "nat4"), ["10.50.0.0/24"]);
  assert.deepEqual(setOf(fw, "nat6"), ["fd50::/64"]);
  assert.deepEqual(setOf(fw, "internal_ifs"), ["br-b", "veth-b1"]);
  assert.deepEqual(setOf(fw, "intra4"), ["10.50.0.0/24 . 10.50.0.0/24", "10.51.0.0/24 . 10.51.0.0/24"]);
  assert.deepEqual(setOf(fw, "intra6"), ["fd50::/64 . fd50::/64"]);
  assert.deepEqual(setOf(fw, "local4"), ["br-b . 10.51.0.0/24", "veth-b1 . 10.51.0.0/24"]);
  assert.deepEqual(setOf(fw, "local6"), []);

  // Idempotent: the same calls again change nothing.
  fw.addNetwork({ name: "a", subnets: ["10.50.0.0/24", "fd50::/64"], nat: true, internal: false });
  fw.addInterface("a", "br-a");
  assert.deepEqual(fw.elements(), before);

  fw.removeInterface("b", "veth-b1");
  fw.removeInterface("b", "veth-b1");
  fw.removeInterface("a", "br-b"); // belongs to b: left alone
  assert.deepEqual(setOf(fw, "internal_ifs"), ["br-b"]);
  assert.deepEqual(setOf(fw, "local4"), ["br-b . 10.51.0.0/24"]);

  fw.removeNetwork("b");
  fw.removeNetwork("b");
  assert.deepEqual(setOf(fw, "nets4"), ["10.50.0.0/24"]);
  assert.deepEqual(setOf(fw, "ifaces"), ["br-a"]);
  assert.deepEqual(setOf(fw, "internal_ifs"), []);
  assert.deepEqual(setOf(fw, "local4"), []);
  assert.deepEqual(setOf(fw, "intra4"), ["10.50.0.0/24 . 10.50.0.0/24"]);

  // A network of two subnets of one family: traffic between them stays in the network (not masqueraded).
  fw.addNetwork({ name: "c", subnets: ["10.54.0.0/24", "10.55.0.0/24"], nat: true, internal: false });
  assert.deepEqual(setOf(fw, "intra4"), [
    "10.50.0.0/24 . 10.50.0.0/24",
    "10.54.0.0/24 . 10.54.0.0/24",
    "10.54.0.0/24 . 10.55.0.0/24",
    "10.55.0.0/24 . 10.54.0.0/24",
    "10.55.0.0/24 . 10.55.0.0/24",
  ]);
  fw.removeNetwork("c");

  // After the last network the table stays, with empty sets and its rules.
  fw.removeNetwork("a");
  for (const s of fw.elements()) assert.deepEqual(s.elements, [], s.set);
  assert.equal(ruleCount(), RULE_COUNT);
  fw.removeAll();
  assert.deepEqual(fw.elements(), []);
});

test("addInterfaceOf/removeInterfacesOf write exactly what addInterface/removeInterface do, and fall back to them", () => {
  const fw = new Firewall();
  const a = { name: "a", subnets: ["10.52.0.0/24", "fd52::/64"], nat: true, internal: false };
  const b = { name: "b", subnets: ["10.53.0.0/24"], nat: false, internal: true };
  fw.addNetwork(a);
  fw.addNetwork(b);
  fw.addInterface("a", "slow-a");
  fw.addInterface("b", "slow-b");
  const slow = sorted(fw);
  fw.removeInterface("a", "slow-a");
  fw.removeInterface("b", "slow-b");
  fw.addInterfaceOf(a, "slow-a");
  fw.addInterfaceOf(b, "slow-b");
  assert.deepEqual(sorted(fw), slow, "the same elements, comments included");
  assert.match(sh("nft list set inet netctx ifaces"), /"slow-a" comment "a"/);

  // Registered already: to the same network it is a no-op, to another the full listing refuses it.
  fw.addInterfaceOf(a, "slow-a");
  assert.deepEqual(sorted(fw), slow);
  assert.throws(
    () => fw.addInterfaceOf(b, "slow-a"),
    (err: unknown) =>
      err instanceof NetctxError && err.code === "conflict" && /belongs to network "a"/.test(err.message),
  );
  // Unless its elements were on their way out (a queued removal): then they go in the same transaction.
  fw.addInterfaceOf(b, "slow-a", a);
  assert.deepEqual(setOf(fw, "local4"), ["slow-a . 10.53.0.0/24", "slow-b . 10.53.0.0/24"]);
  fw.addInterfaceOf(a, "slow-a", b);
  assert.deepEqual(sorted(fw), slow);

  fw.removeInterfacesOf([{ network: b, ifname: "slow-b" }]);
  // One of them gone already: the listing path takes the rest.
  fw.removeInterfacesOf([
    { network: b, ifname: "slow-b" },
    { network: a, ifname: "slow-a" },
  ]);
  for (const set of ["ifaces", "internal_ifs", "same_if", "local4", "local6"])
    assert.deepEqual(setOf(fw, set), [], set);
  assert.deepEqual(setOf(fw, "nets4"), ["10.52.0.0/24", "10.53.0.0/24"]);
  fw.removeAll();
});

test("a later Firewall object (a one-shot CLI) learns networks from the kernel", () => {
  new Firewall().addNetwork({
    name: "front-network-with-a-32-char-nm",
    subnets: ["10.70.0.1/24"],
    nat: true,
    internal: true,
  });
  const fw = new Firewall();
  fw.addInterface("front-network-with-a-32-char-nm", "br-front-15char");
  assert.deepEqual(setOf(fw, "local4"), ["br-front-15char . 10.70.0.0/24"]);
  assert.deepEqual(setOf(fw, "internal_ifs"), ["br-front-15char"]);
  fw.removeAll();
});

test("begin/commit makes several calls one nft transaction", () => {
  const log = join(scratch, "nft.log");
  const wrapper = join(scratch, "nft-wrapper");
  writeFileSync(wrapper, `#!/bin/sh\necho "$*" >> ${log}\nexec nft "$@"\n`);
  chmodSync(wrapper, 0o755);
  writeFileSync(log, "");
  const fw = new Firewall({ nftPath: wrapper });
  fw.begin();
  fw.addNetwork({ name: "x", subnets: ["10.80.0.0/24"], nat: true, internal: false });
  fw.addInterface("x", "br-x");
  fw.addNetwork({ name: "y", subnets: ["10.81.0.0/24"], nat: false, internal: true });
  fw.addInterface("y", "br-y");
  fw.commit();
  const calls = readFileSync(log, "utf8").trim().split("\n");
  assert.deepEqual(calls, ["-j list table inet netctx", "-f -"]);
  assert.deepEqual(setOf(fw, "ifaces"), ["br-x", "br-y"]);

  // A failed call inside a batch leaves the batch usable; rollback drops it without touching the kernel.
  fw.begin();
  fw.removeNetwork("x");
  assert.throws(() => fw.addInterface("nope", "br-z"), { code: "not-found" });
  fw.rollback();
  assert.deepEqual(setOf(fw, "ifaces"), ["br-x", "br-y"]);
  fw.removeAll();
});

test("a foreign table inet other is left untouched by ensure, changes and removeAll", () => {
  sh(`nft -f - <<'EOF'
table inet other {
  set s { type ipv4_addr; elements = { 1.2.3.4 } }
  chain my_forward { type filter hook forward priority -10; policy accept; counter; }
  chain my_post { type nat hook postrouting priority srcnat; policy accept; ip saddr 10.99.0.0/16 masquerade; }
}
EOF`);
  const before = sh("nft -j list table inet other");
  const fw = new Firewall();
  fw.ensure();
  fw.addNetwork({ name: "a", subnets: ["10.50.0.0/24"], nat: true, internal: true });
  fw.addInterface("a", "br-a");
  fw.removeAll();
  assert.equal(sh("nft -j list table inet other"), before);
  assert.equal(tableExists("inet", "netctx"), false);
  fw.removeAll(); // nothing of ours left: still fine
  sh("nft delete table inet other");
});

test("removeAll deletes table bridge netctx too, and only ours", () => {
  sh("nft add table bridge netctx; nft add table bridge other; nft add table ip netctx");
  const fw = new Firewall();
  fw.ensure();
  fw.removeAll();
  const tables = sh("nft list tables");
  assert.doesNotMatch(tables, /table (inet|bridge) netctx/);
  assert.match(tables, /table bridge other/);
  assert.match(tables, /table ip netctx/);
  sh("nft delete table bridge other; nft delete table ip netctx");
});

test("a flushed chain or a deleted set is repaired by the next change, elements kept", () => {
  const fw = new Firewall();
  fw.addNetwork({ name: "a", subnets: ["10.50.0.0/24"], nat: true, internal: false });
  fw.addInterface("a", "br-a");
  sh("nft flush chain inet netctx postrouting");
  fw.ensure();
  assert.equal(ruleCount(), RULE_COUNT);
  sh(
    "nft flush chain inet netctx forward; nft flush chain inet netctx input; nft delete set inet netctx internal_ifs",
  );
  fw.addInterface("a", "veth-a");
  assert.equal(ruleCount(), RULE_COUNT);
  assert.deepEqual(setOf(fw, "ifaces"), ["br-a", "veth-a"]);
  assert.deepEqual(setOf(fw, "nat4"), ["10.50.0.0/24"]);
  // A table of the layout before the intra sets: the next exact-element registration notices and rebuilds it.
  sh("nft flush chain inet netctx postrouting; nft delete set inet netctx intra4");
  fw.addInterfaceOf({ name: "a", subnets: ["10.50.0.0/24"], nat: true, internal: false }, "veth-a2");
  assert.deepEqual(setOf(fw, "intra4"), ["10.50.0.0/24 . 10.50.0.0/24"]);
  assert.deepEqual(setOf(fw, "ifaces"), ["br-a", "veth-a", "veth-a2"]);
  fw.removeAll();
});

test("addresses and interface names go through the one codec and the one name check (net/)", () => {
  const fw = new Firewall();
  const net = { name: "a", subnets: ["10.50.0.0/24"], nat: false, internal: false };
  // inet_aton reads "010" as octal 8: refused everywhere, as the model refuses it.
  assert.throws(() => fw.addNetwork({ ...net, subnets: ["010.50.0.0/24"] }), {
    code: "invalid",
    field: "subnets[0]",
  });
  fw.addNetwork(net);
  // Eight two-byte characters: 16 bytes, over the kernel's 15 however few characters they are.
  assert.throws(() => fw.addInterface("a", "é".repeat(8)), { code: "invalid", message: /15 bytes/ });
  fw.removeAll();
});

test("bad input is refused before nft runs, with the field named", () => {
  const fw = new Firewall();
  const net = { name: "a", subnets: ["10.50.0.0/24"], nat: false, internal: false };
  assert.throws(() => fw.addNetwork({ ...net, subnets: ["10.50.0.0/33"] }), {
    code: "invalid",
    field: "subnets[0]",
  });
  assert.throws(() => fw.addNetwork({ ...net, subnets: ["fd200::/64"] }), { code: "invalid" });
  assert.throws(() => fw.addNetwork({ ...net, subnets: [] }), { code: "invalid", field: "subnets" });
  assert.throws(() => fw.addNetwork({ ...net, name: 'a"; flush ruleset' }), {
    code: "invalid",
    field: "network",
  });
  assert.throws(() => fw.addNetwork({ ...net, subnets: ["10.0.0.0/8", "10.50.0.0/24"] }), {
    code: "invalid",
  });
  fw.addNetwork(net);
  assert.throws(() => fw.addNetwork({ ...net, name: "b", subnets: ["10.50.0.128/25"] }), {
    code: "conflict",
    message: /10\.50\.0\.128\/25 overlaps 10\.50\.0\.0\/24 of network "a"/,
  });
  assert.throws(() => fw.addInterface("a", "sixteen-bytes-xx"), { code: "invalid", field: "ifname" });
  assert.throws(() => fw.addInterface("a", "a/b"), { code: "invalid", field: "ifname" });
  assert.throws(() => fw.addInterface("missing", "br-x"), { code: "not-found" });
  fw.addNetwork({ ...net, name: "b", subnets: ["10.51.0.0/24"] });
  fw.addInterface("a", "br-a");
  assert.throws(() => fw.addInterface("b", "br-a"), { code: "conflict", field: "ifname" });
  fw.removeAll();
});

test("nft errors are one-line NetctxErrors carrying nft's message and the failing command", () => {
  const nft = new Nft();
  nft.apply("add table inet scratch");
  try {
    nft.apply("add table inet scratch\nadd rule inet scratch nochain counter");
    assert.fail("nft accepted a rule for a missing chain");
  } catch (err) {
    assert.ok(err instanceof NetctxError);
    assert.equal(err.code, "kernel");
    assert.equal(err.message.includes("\n"), false);
    assert.match(
      err.message,
      /^nft: Error: .*No such file or directory \(in: add rule inet scratch nochain counter\)$/,
    );
  }
  assert.throws(
    () => nft.apply("add rule inet scratch nochain bogus-keyword"),
    (err: unknown) => {
      assert.ok(err instanceof NetctxError);
      assert.equal(err.message.includes("\n"), false);
      assert.match(err.message, /^nft: Error: syntax error/);
      return true;
    },
  );
  assert.equal(nft.list(["table", "inet", "absent"]), null);
  nft.apply("delete table inet scratch");
});

test("a missing nft binary is NetctxError unsupported", () => {
  const fw = new Firewall({ nftPath: "/nonexistent/nft" });
  assert.throws(
    () => fw.ensure(),
    (err: unknown) => {
      assert.ok(err instanceof NetctxError);
      assert.equal(err.code, "unsupported");
      assert.match(err.message, /nft binary "\/nonexistent\/nft" was not found/);
      return true;
    },
  );
});
