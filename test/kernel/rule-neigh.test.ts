import assert from "node:assert/strict";
import { after, test } from "node:test";
import { KernelError } from "../../src/kernel/errors.ts";
import { Rtnl } from "../../src/kernel/rtnl.ts";
import { ipj } from "../utils/kernel-oracle.ts";

const rtnl = Rtnl.open();
after(() => rtnl.close());

test("v4 rules: from, to, fwmark/mask, iif/oif, table 1000 and 100, priority", () => {
  rtnl.ruleAdd({ family: 4, priority: 100, from: "10.1.0.0/24", table: 1000 });
  rtnl.ruleAdd({ family: 4, priority: 101, fwmark: 0x42, fwmask: 0xff, table: 1000 });
  rtnl.ruleAdd({ family: 4, priority: 102, to: "192.0.2.0/24", iif: "lo", table: 100 });
  rtnl.ruleAdd({ family: 4, priority: 103, oif: "lo", from: "10.9.9.9/32", table: 1000 });
  const seen = ipj(["-4", "rule", "show"]);
  const at = (p: number) => seen.find((r) => r.priority === p);
  assert.deepEqual(at(100), { priority: 100, src: "10.1.0.0", srclen: 24, table: "1000" });
  assert.deepEqual(at(101), { priority: 101, src: "all", fwmark: "0x42", fwmask: "0xff", table: "1000" });
  assert.deepEqual(at(102), {
    priority: 102,
    src: "all",
    dst: "192.0.2.0",
    dstlen: 24,
    iif: "lo",
    table: "100",
  });
  assert.deepEqual(at(103), { priority: 103, src: "10.9.9.9", oif: "lo", table: "1000" });

  const ours = rtnl.ruleList(4);
  assert.deepEqual(
    ours.map((r) => r.priority),
    [0, 100, 101, 102, 103, 32766, 32767],
  );
  assert.deepEqual(ours[1], { family: 4, priority: 100, table: 1000, from: "10.1.0.0/24" });
  assert.deepEqual(ours[2], { family: 4, priority: 101, table: 1000, fwmark: 0x42, fwmask: 0xff });
  assert.deepEqual(ours[3], { family: 4, priority: 102, table: 100, to: "192.0.2.0/24", iif: "lo" });
  assert.equal(ours[4]?.oif, "lo");

  assert.throws(
    () => rtnl.ruleAdd({ family: 4, priority: 100, from: "10.1.0.0/24", table: 1000 }),
    (err: unknown) => err instanceof KernelError && err.errnoName === "EEXIST",
  );
  for (const r of ours.filter((r) => r.priority >= 100 && r.priority < 200)) rtnl.ruleDel(r);
  assert.deepEqual(
    ipj(["-4", "rule", "show"]).map((r) => r.priority),
    [0, 32766, 32767],
  );
  assert.throws(
    () => rtnl.ruleDel({ family: 4, priority: 100, table: 1000 }),
    (err: unknown) => err instanceof KernelError && err.errnoName === "ENOENT",
  );
});

test("v6 rules: from, fwmark, table, priority", () => {
  rtnl.ruleAdd({ family: 6, priority: 200, from: "fd00:1::/64", table: 1001 });
  rtnl.ruleAdd({ family: 6, priority: 201, fwmark: 7, table: 1001 });
  const seen = ipj(["-6", "rule", "show"]);
  assert.deepEqual(
    seen.find((r) => r.priority === 200),
    { priority: 200, src: "fd00:1::", srclen: 64, table: "1001" },
  );
  assert.equal(seen.find((r) => r.priority === 201)?.fwmark, "0x7");
  assert.ok(!ipj(["-4", "rule", "show"]).some((r) => r.priority === 200), "a v6 rule is not a v4 rule");
  const ours = rtnl.ruleList(6).filter((r) => r.priority >= 200 && r.priority < 300);
  assert.deepEqual(ours, [
    { family: 6, priority: 200, table: 1001, from: "fd00:1::/64" },
    { family: 6, priority: 201, table: 1001, fwmark: 7, fwmask: 0xffffffff },
  ]);
  rtnl.ruleDel({ family: 6, priority: 200, from: "fd00:1::/64", table: 1001 });
  assert.ok(!ipj(["-6", "rule", "show"]).some((r) => r.priority === 200));
});

test("neighbours: permanent v4 and v6, noarp, list and delete", () => {
  rtnl.linkAdd({ name: "nb0", kind: "veth", up: true, peer: { name: "nb0p", up: true } });
  rtnl.neighAdd({ ifname: "nb0", ip: "10.5.0.9", mac: "02:00:00:00:05:09" });
  rtnl.neighAdd({ ifname: "nb0", ip: "fd05::9", mac: "02:00:00:00:05:0a", state: "permanent" });
  rtnl.neighAdd({ ifname: "nb0", ip: "10.5.0.10", mac: "02:00:00:00:05:10", state: "noarp" });
  const seen = ipj(["neigh", "show", "dev", "nb0", "nud", "all"]);
  const by = (ip: string) => seen.find((n) => n.dst === ip);
  assert.equal(by("10.5.0.9")?.lladdr, "02:00:00:00:05:09");
  assert.deepEqual(by("10.5.0.9")?.state, ["PERMANENT"]);
  assert.equal(by("fd05::9")?.lladdr, "02:00:00:00:05:0a");
  assert.deepEqual(by("10.5.0.10")?.state, ["NOARP"]);

  const ours = rtnl.neighList("nb0");
  const o = (ip: string) => ours.find((n) => n.ip === ip);
  assert.deepEqual(o("10.5.0.9"), {
    ifname: "nb0",
    ip: "10.5.0.9",
    mac: "02:00:00:00:05:09",
    state: "permanent",
  });
  assert.deepEqual(o("fd05::9"), {
    ifname: "nb0",
    ip: "fd05::9",
    mac: "02:00:00:00:05:0a",
    state: "permanent",
  });
  assert.equal(o("10.5.0.10")?.state, "noarp");
  assert.ok(rtnl.neighList().some((n) => n.ip === "10.5.0.9"));
  assert.deepEqual(
    rtnl.neighList("lo").filter((n) => n.ip === "10.5.0.9"),
    [],
  );

  assert.throws(
    () => rtnl.neighAdd({ ifname: "nb0", ip: "10.5.0.9", mac: "02:00:00:00:05:09" }),
    (err: unknown) => err instanceof KernelError && err.errnoName === "EEXIST",
  );
  rtnl.neighDel({ ifname: "nb0", ip: "10.5.0.9" });
  rtnl.neighDel({ ifname: "nb0", ip: "fd05::9" });
  const left = ipj(["neigh", "show", "dev", "nb0"]).map((n) => n.dst);
  assert.ok(!left.includes("10.5.0.9") && !left.includes("fd05::9"));
  assert.throws(
    () => rtnl.neighDel({ ifname: "nb0", ip: "10.5.0.9" }),
    (err: unknown) => err instanceof KernelError && err.errnoName === "ENOENT",
  );
});
