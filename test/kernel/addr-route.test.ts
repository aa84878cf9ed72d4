import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { NetctxError } from "../../src/errors.ts";
import { KernelError } from "../../src/kernel/errors.ts";
import { createNetns } from "../../src/kernel/netns.ts";
import { Rtnl } from "../../src/kernel/rtnl.ts";
import { ipAddrs, ipj } from "../utils/kernel-oracle.ts";

const rtnl = Rtnl.open();
after(() => rtnl.close());
before(() => {
  rtnl.linkAdd({ name: "ar0", kind: "veth", up: true, peer: { name: "ar0p", up: true } });
});

test("v4 and v6 addresses, nodad and noprefixroute, as ip sees them", () => {
  rtnl.addrAdd("ar0", "10.1.0.2/24");
  rtnl.addrAdd("ar0", "fd00::2/64", { nodad: true });
  rtnl.addrAdd("ar0", "fd01::2/64");
  rtnl.addrAdd("ar0", "10.2.0.2/24", { noprefixroute: true });
  const seen = ipAddrs("ar0");
  assert.deepEqual(
    seen.map((a) => a.cidr),
    ["10.1.0.2/24", "10.2.0.2/24", "fd01::2/64", "fd00::2/64"],
  );
  assert.equal(seen.find((a) => a.cidr === "fd00::2/64")?.nodad, true);
  assert.equal(seen.find((a) => a.cidr === "fd01::2/64")?.nodad, false);
  // noprefixroute: no connected route for 10.2.0.0/24, but one for 10.1.0.0/24.
  const dsts = ipj(["-4", "route", "show", "table", "main"]).map((r) => r.dst);
  assert.ok(dsts.includes("10.1.0.0/24"));
  assert.ok(!dsts.includes("10.2.0.0/24"));

  const ours = rtnl.addrList("ar0");
  assert.deepEqual(
    ours.filter((a) => a.scope === "global").map((a) => [a.ifname, a.family, a.cidr]),
    [
      ["ar0", 4, "10.1.0.2/24"],
      ["ar0", 4, "10.2.0.2/24"],
      ["ar0", 6, "fd01::2/64"],
      ["ar0", 6, "fd00::2/64"],
    ],
  );
  assert.ok(ours.some((a) => a.scope === "link" && a.cidr.startsWith("fe80::")));
  assert.ok(rtnl.addrList().some((a) => a.ifname === "lo" && a.cidr === "127.0.0.1/8" && a.scope === "host"));
  assert.deepEqual(rtnl.addrList("nosuchdev"), []);

  rtnl.addrDel("ar0", "10.2.0.2/24");
  rtnl.addrDel("ar0", "fd01::2/64");
  assert.deepEqual(
    ipAddrs("ar0").map((a) => a.cidr),
    ["10.1.0.2/24", "fd00::2/64"],
  );
});

test("address errors carry the kernel's extack text", () => {
  rtnl.addrAdd("ar0", "10.3.0.2/24");
  assert.throws(
    () => rtnl.addrAdd("ar0", "10.3.0.2/24"),
    (err: unknown) =>
      err instanceof KernelError &&
      err.errnoName === "EEXIST" &&
      err.extack === "ipv4: Address already assigned" &&
      err.message === "addr add 10.3.0.2/24 dev ar0: EEXIST: ipv4: Address already assigned",
  );
  assert.throws(
    () => rtnl.addrDel("ar0", "10.99.0.2/24"),
    (err: unknown) => err instanceof KernelError && err.errnoName === "EADDRNOTAVAIL",
  );
  assert.throws(
    () => rtnl.addrAdd("nosuchdev", "10.3.0.2/24"),
    (err: unknown) => err instanceof KernelError && err.errnoName === "ENODEV",
  );
  assert.throws(
    () => rtnl.addrAdd("ar0", "10.3.0.300/24"),
    (err: unknown) => err instanceof NetctxError && err.code === "invalid",
  );
  assert.throws(
    () => rtnl.addrAdd("ar0", "10.3.0.3/33"),
    (err: unknown) => err instanceof NetctxError && err.code === "invalid",
  );
});

test("routes: gateway, dev, table 1000, metric, src, onlink, blackhole, v4 and v6", () => {
  rtnl.addrAdd("ar0", "10.4.0.2/24");
  rtnl.addrAdd("ar0", "fd04::2/64", { nodad: true });
  rtnl.routeAdd({ dst: "10.50.0.0/16", gateway: "10.4.0.1", table: 1000, metric: 7 });
  rtnl.routeAdd({ dst: "default", gateway: "10.4.0.1", table: 1000, src: "10.4.0.2" });
  rtnl.routeAdd({ dst: "10.60.0.0/16", dev: "ar0", table: 1000 });
  rtnl.routeAdd({ dst: "10.70.0.0/16", gateway: "192.0.2.1", dev: "ar0", onlink: true, table: 1000 });
  rtnl.routeAdd({ dst: "10.80.0.0/16", type: "blackhole", table: 1000 });
  rtnl.routeAdd({ dst: "fd50::/48", gateway: "fd04::1", table: 1000, metric: 9 });
  rtnl.routeAdd({ dst: "default", family: 6, dev: "ar0", table: 1000 });
  rtnl.routeAdd({ dst: "fd80::/48", type: "unreachable", table: 1000 });

  const v4 = ipj(["-4", "route", "show", "table", "1000"]);
  const by = (dst: string) => v4.find((r) => r.dst === dst);
  assert.deepEqual(by("10.50.0.0/16"), {
    dst: "10.50.0.0/16",
    gateway: "10.4.0.1",
    dev: "ar0",
    metric: 7,
    flags: [],
  });
  assert.equal(by("default")?.gateway, "10.4.0.1");
  assert.equal(by("default")?.prefsrc, "10.4.0.2");
  assert.equal(by("10.60.0.0/16")?.scope, "link");
  assert.equal(by("10.60.0.0/16")?.dev, "ar0");
  assert.deepEqual(by("10.70.0.0/16")?.flags, ["onlink"]);
  assert.equal(by("10.80.0.0/16")?.type, "blackhole");
  const v6 = ipj(["-6", "route", "show", "table", "1000"]);
  assert.equal(v6.find((r) => r.dst === "fd50::/48")?.gateway, "fd04::1");
  assert.equal(v6.find((r) => r.dst === "fd50::/48")?.metric, 9);
  assert.equal(v6.find((r) => r.dst === "default")?.dev, "ar0");
  assert.equal(v6.find((r) => r.dst === "fd80::/48")?.type, "unreachable");
  // Table 1000 must not have been clamped into some u8 table.
  const everywhere = ipj(["-4", "route", "show", "table", "all"]).filter((r) => r.dst === "10.50.0.0/16");
  assert.deepEqual(
    everywhere.map((r) => r.table),
    ["1000"],
  );

  const ours = rtnl.routeList({ family: 4, table: 1000 });
  assert.deepEqual(ours.map((r) => r.dst).sort(), [
    "10.50.0.0/16",
    "10.60.0.0/16",
    "10.70.0.0/16",
    "10.80.0.0/16",
    "default",
  ]);
  const r50 = ours.find((r) => r.dst === "10.50.0.0/16");
  assert.equal(r50?.table, 1000);
  assert.equal(r50?.gateway, "10.4.0.1");
  assert.equal(r50?.dev, "ar0");
  assert.equal(r50?.metric, 7);
  assert.equal(r50?.devIndex, rtnl.linkIndex("ar0"));
  assert.equal(ours.find((r) => r.dst === "10.70.0.0/16")?.onlink, true);
  assert.equal(ours.find((r) => r.dst === "10.80.0.0/16")?.type, "blackhole");
  assert.equal(ours.find((r) => r.dst === "default")?.src, "10.4.0.2");
  const ours6 = rtnl.routeList({ family: 6, table: 1000 });
  assert.deepEqual(ours6.map((r) => r.dst).sort(), ["default", "fd50::/48", "fd80::/48"]);
  assert.ok(rtnl.routeList({ table: 1000 }).length === 8);
  assert.ok(
    rtnl.routeList().some((r) => r.table === 255),
    "without a filter every table is listed",
  );

  assert.throws(
    () => rtnl.routeAdd({ dst: "10.50.0.0/16", gateway: "10.4.0.1", table: 1000, metric: 7 }),
    (err: unknown) => err instanceof KernelError && err.errnoName === "EEXIST",
  );
  rtnl.routeReplace({ dst: "10.50.0.0/16", gateway: "10.4.0.3", table: 1000, metric: 7 });
  assert.equal(ipj(["-4", "route", "show", "table", "1000", "10.50.0.0/16"])[0]?.gateway, "10.4.0.3");

  // Every listed route can be deleted as listed (what teardown does), leaving the table empty.
  for (const r of rtnl.routeList({ table: 1000 })) rtnl.routeDel(r);
  assert.equal(ipj(["route", "show", "table", "1000"]).length, 0);
  assert.equal(ipj(["-6", "route", "show", "table", "1000"]).length, 0);
  // A table filter is the kernel's (strict dump): an emptied or unknown table answers ENOENT, read as no routes,
  // and the socket's other dumps (which strict checking would refuse) still work afterwards.
  assert.deepEqual(rtnl.routeList({ table: 1000 }), []);
  assert.deepEqual(rtnl.routeList({ family: 4, table: 4242 }), []);
  assert.ok(rtnl.ruleList(4).length > 0 && rtnl.linkGet("ar0") !== undefined);
  assert.throws(
    () => rtnl.routeDel({ dst: "10.50.0.0/16", table: 1000 }),
    (err: unknown) => err instanceof KernelError && err.errnoName === "ESRCH",
  );
  assert.throws(
    () => rtnl.routeAdd({ dst: "10.90.0.0/16", gateway: "10.77.0.1" }),
    (err: unknown) =>
      err instanceof KernelError && err.errnoName === "ENETUNREACH" && err.extack !== undefined,
  );
  assert.throws(
    () => rtnl.routeAdd({ dst: "10.90.0.0/16", gateway: "fd04::1" }),
    (err: unknown) => err instanceof NetctxError && err.code === "invalid",
  );
});

test("a dump of 1500 addresses in a netns arrives complete", () => {
  const ns = createNetns("addr-many");
  const there = Rtnl.open(ns);
  try {
    there.linkAdd({ name: "many0", kind: "bridge" });
    for (let i = 0; i < 1500; i++) there.addrAdd("many0", `10.${100 + (i >> 8)}.${i & 255}.1/32`);
    const ours = there.addrList("many0").filter((a) => a.family === 4);
    assert.equal(ours.length, 1500);
    assert.equal(ipAddrs("many0", ns).length, 1500);
  } finally {
    there.close();
  }
});

test("route get: the device, gateway and source address ip route get reports; undefined without a route", () => {
  rtnl.addrAdd("ar0", "10.5.0.2/24");
  rtnl.addrAdd("ar0", "fd05::2/64", { nodad: true });
  rtnl.routeAdd({ dst: "10.55.0.0/16", gateway: "10.5.0.1" });
  for (const address of ["10.5.0.9", "10.55.1.1", "fd05::9", "10.5.0.2"]) {
    const mine = rtnl.routeGet(address);
    const theirs = ipj<{ dev: string; prefsrc?: string; gateway?: string }>(["route", "get", address])[0]!;
    assert.equal(mine?.dev, theirs.dev, address);
    assert.equal(mine?.src, theirs.prefsrc, address);
    assert.equal(mine?.gateway, theirs.gateway, address);
  }
  assert.equal(rtnl.routeGet("203.0.113.9"), undefined, "no default route in the test's namespace");
});
