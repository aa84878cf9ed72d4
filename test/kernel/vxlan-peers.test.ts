/**
 * What a VXLAN data path asks of the kernel (networks/overlay-peers.ts): forwarding database entries of the device
 * itself (AF_BRIDGE, NTF_SELF), neighbour entries replaced in place, routes onlink through the device and a dump of
 * the routes through one device. Each checked against iproute2 (`bridge -j fdb`, `ip -j neigh`, `ip -j route`).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { KernelError } from "../../src/kernel/errors.ts";
import { Rtnl } from "../../src/kernel/rtnl.ts";
import { ipj, type Json } from "../utils/kernel-oracle.ts";
import { must } from "../utils/shell.ts";

const rtnl = Rtnl.open();
after(() => rtnl.close());

/** `bridge -j fdb show dev DEV`, in MAC order (the kernel's is its hash table's). */
const fdb = (dev: string): Json[] =>
  (JSON.parse(must(["bridge", "-j", "fdb", "show", "dev", dev]).trim() || "[]") as Json[]).sort((a, b) =>
    `${a.mac} ${a.dst}`.localeCompare(`${b.mac} ${b.dst}`),
  );

before(() => {
  rtnl.linkAdd({ name: "vxu", kind: "veth", up: true, peer: { name: "vxup", up: true } });
  rtnl.addrAdd("vxu", "192.0.2.1/24");
  rtnl.linkAdd({
    name: "vxp",
    kind: "vxlan",
    up: true,
    vxlan: { vni: 10, local: "192.0.2.1", dev: "vxu", learning: false },
  });
  rtnl.linkAdd({ name: "vxq", kind: "vxlan", vxlan: { vni: 11, local: "192.0.2.1", learning: false } });
});

test("fdb replace, append and del on a vxlan device, as bridge fdb shows them", () => {
  rtnl.fdbChange("replace", { ifname: "vxp", mac: "02:00:00:00:01:01", dst: "192.0.2.11" });
  rtnl.fdbChange("replace", { ifname: "vxp", mac: "02:00:00:00:01:02", dst: "192.0.2.12" });
  rtnl.fdbChange("replace", { ifname: "vxq", mac: "02:00:00:00:01:09", dst: "192.0.2.19" });
  assert.deepEqual(fdb("vxp"), [
    { mac: "02:00:00:00:01:01", dst: "192.0.2.11", flags: ["self"], state: "permanent" },
    { mac: "02:00:00:00:01:02", dst: "192.0.2.12", flags: ["self"], state: "permanent" },
  ]);
  const ours = rtnl.fdbList("vxp").sort((a, b) => a.mac.localeCompare(b.mac));
  assert.deepEqual(ours, [
    { ifname: "vxp", mac: "02:00:00:00:01:01", dst: "192.0.2.11", state: "permanent", self: true },
    { ifname: "vxp", mac: "02:00:00:00:01:02", dst: "192.0.2.12", state: "permanent", self: true },
  ]);
  assert.equal(rtnl.fdbList("vxq").length, 1, "the dump is the one device's");
  assert.deepEqual(rtnl.fdbList("missing0"), []);

  // replace moves the MAC to its new remote; append adds a second one (a flood list).
  rtnl.fdbChange("replace", { ifname: "vxp", mac: "02:00:00:00:01:01", dst: "192.0.2.21" });
  assert.deepEqual(
    fdb("vxp").map((e) => `${e.mac} ${e.dst}`),
    ["02:00:00:00:01:01 192.0.2.21", "02:00:00:00:01:02 192.0.2.12"],
  );
  rtnl.fdbChange("append", { ifname: "vxp", mac: "00:00:00:00:00:00", dst: "192.0.2.31" });
  rtnl.fdbChange("append", { ifname: "vxp", mac: "00:00:00:00:00:00", dst: "192.0.2.32" });
  assert.deepEqual(
    fdb("vxp")
      .filter((e) => e.mac === "00:00:00:00:00:00")
      .map((e) => e.dst)
      .sort(),
    ["192.0.2.31", "192.0.2.32"],
  );
  rtnl.fdbChange("del", { ifname: "vxp", mac: "00:00:00:00:00:00", dst: "192.0.2.31" });
  assert.deepEqual(
    fdb("vxp")
      .filter((e) => e.mac === "00:00:00:00:00:00")
      .map((e) => e.dst),
    ["192.0.2.32"],
  );
  rtnl.fdbChange("del", { ifname: "vxp", mac: "00:00:00:00:00:00" });
  rtnl.fdbChange("del", { ifname: "vxp", mac: "02:00:00:00:01:02", dst: "192.0.2.12" });
  assert.deepEqual(
    fdb("vxp").map((e) => e.mac),
    ["02:00:00:00:01:01"],
  );
  assert.throws(
    () => rtnl.fdbChange("del", { ifname: "vxp", mac: "02:00:00:00:01:02" }),
    (err: unknown) => err instanceof KernelError && err.errnoName === "ENOENT",
  );
  // IPv6 remotes on a device whose local address is IPv4 are refused by the kernel, not by us.
  assert.throws(
    () => rtnl.fdbChange("replace", { ifname: "vxp", mac: "02:00:00:00:01:03", dst: "fd00::3" }),
    (err: unknown) => err instanceof KernelError,
  );
});

test("neighbour replace: added, then changed in place, permanent", () => {
  rtnl.neighReplace({ ifname: "vxp", ip: "10.44.2.0", mac: "02:00:00:00:02:01" });
  rtnl.neighReplace({ ifname: "vxp", ip: "fd44:0:0:2::", mac: "02:00:00:00:02:01" });
  rtnl.neighReplace({ ifname: "vxp", ip: "10.44.2.0", mac: "02:00:00:00:02:02" });
  const seen = ipj(["neigh", "show", "dev", "vxp"]);
  assert.deepEqual(seen.map((n) => `${n.dst} ${n.lladdr} ${(n.state as string[]).join(",")}`).sort(), [
    "10.44.2.0 02:00:00:00:02:02 PERMANENT",
    "fd44:0:0:2:: 02:00:00:00:02:01 PERMANENT",
  ]);
  rtnl.neighDel({ ifname: "vxp", ip: "fd44:0:0:2::" });
  assert.deepEqual(
    rtnl
      .neighList("vxp")
      .filter((n) => n.state === "permanent")
      .map((n) => `${n.ip} ${n.mac} ${n.state}`),
    ["10.44.2.0 02:00:00:00:02:02 permanent"],
  );
});

test("onlink routes through the vxlan device, v4 and v6; routeList by device", () => {
  rtnl.addrAdd("vxp", "10.44.1.0/32");
  rtnl.addrAdd("vxp", "fd44:0:0:1::/128", { nodad: true });
  rtnl.routeReplace({ dst: "10.44.2.0/24", gateway: "10.44.2.0", dev: "vxp", onlink: true });
  rtnl.routeReplace({ dst: "fd44:0:0:2::/64", gateway: "fd44:0:0:2::", dev: "vxp", onlink: true });
  rtnl.routeReplace({ dst: "10.44.3.0/24", gateway: "192.0.2.13", dev: "vxu" });
  const v4 = ipj(["-4", "route", "show", "dev", "vxp"]);
  assert.deepEqual(v4, [{ dst: "10.44.2.0/24", gateway: "10.44.2.0", flags: ["onlink"] }]);
  const v6 = ipj(["-6", "route", "show", "dev", "vxp"]).filter((r) => r.dst === "fd44:0:0:2::/64");
  assert.equal(v6.length, 1);
  assert.equal(v6[0]?.gateway, "fd44:0:0:2::");
  assert.deepEqual(v6[0]?.flags, ["onlink"]);

  const mine = rtnl.routeList({ dev: "vxp", table: 254 }).filter((r) => !r.dst.startsWith("fe80:"));
  assert.deepEqual(mine.map((r) => `${r.dst} ${r.gateway ?? "-"} ${r.dev} ${r.onlink ?? false}`).sort(), [
    "10.44.2.0/24 10.44.2.0 vxp true",
    "fd44:0:0:1::/128 - vxp false",
    "fd44:0:0:2::/64 fd44:0:0:2:: vxp true",
  ]);
  assert.ok(!mine.some((r) => r.dst === "10.44.3.0/24"), "the dump is the device's routes only");
  assert.deepEqual(rtnl.routeList({ dev: "missing0" }), []);
  rtnl.routeDel({ dst: "10.44.2.0/24", dev: "vxp" });
  rtnl.routeDel({ dst: "fd44:0:0:2::/64", dev: "vxp" });
  assert.deepEqual(ipj(["-4", "route", "show", "dev", "vxp"]), []);
});
