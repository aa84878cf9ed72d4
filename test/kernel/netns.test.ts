import assert from "node:assert/strict";
import { test } from "node:test";
import { KernelError } from "../../src/kernel/errors.ts";
import {
  createNetns,
  deleteNetns,
  inNetns,
  listNetns,
  NETNS_DIR,
  netnsPath,
} from "../../src/kernel/netns.ts";
import { Rtnl } from "../../src/kernel/rtnl.ts";
import { readSysctl, writeSysctl } from "../../src/kernel/sysctl.ts";
import { ipj, ipLinkNames } from "../utils/kernel-oracle.ts";
import { must } from "../utils/shell.ts";

const selfNet = () => must(["readlink", "/proc/thread-self/ns/net"]).trim();

test("create, list, ip netns exec, delete", () => {
  const home = selfNet();
  const path = createNetns("ns-a");
  assert.equal(path, `${NETNS_DIR}/ns-a`);
  assert.equal(netnsPath("ns-a"), path);
  createNetns("ns-b");
  assert.deepEqual(listNetns(), ["ns-a", "ns-b"]);
  assert.equal(selfNet(), home, "the creating thread is back in its own netns");
  assert.equal(readlinkOf("/proc/thread-self/ns/net"), home);
  assert.deepEqual(
    ipj(["netns", "list"])
      .map((n) => n.name)
      .sort(),
    ["ns-a", "ns-b"],
  );
  // `ip netns exec` enters the bind-mounted namespace: only a (down) loopback there.
  const inside = JSON.parse(must(["ip", "netns", "exec", "ns-a", "ip", "-j", "link"])) as {
    ifname: string;
    flags: string[];
  }[];
  assert.deepEqual(
    inside.map((l) => l.ifname),
    ["lo"],
  );
  assert.ok(!inside[0]?.flags.includes("UP"));
  assert.notEqual(must(["ip", "netns", "exec", "ns-a", "readlink", "/proc/self/ns/net"]).trim(), home);
  assert.notEqual(
    must(["ip", "netns", "exec", "ns-a", "readlink", "/proc/self/ns/net"]).trim(),
    must(["ip", "netns", "exec", "ns-b", "readlink", "/proc/self/ns/net"]).trim(),
  );

  assert.throws(
    () => createNetns("ns-a"),
    (err: unknown) => err instanceof KernelError && err.errnoName === "EEXIST" && err.op === "netns add ns-a",
  );
  assert.deepEqual(listNetns(), ["ns-a", "ns-b"], "a failed create leaves the existing one alone");
  assert.ok(ipj(["netns", "list"]).some((n) => n.name === "ns-a"));

  deleteNetns("ns-a");
  deleteNetns("ns-a");
  deleteNetns("never-made");
  assert.deepEqual(listNetns(), ["ns-b"]);
  assert.ok(!ipj(["netns", "list"]).some((n) => n.name === "ns-a"));
});

function readlinkOf(p: string): string {
  return must(["readlink", p]).trim();
}

test("inNetns runs synchronously inside and always comes back", () => {
  const path = createNetns("ns-win");
  const home = selfNet();
  const inner = inNetns(path, () => selfNet());
  assert.notEqual(inner, home);
  assert.equal(inner, must(["ip", "netns", "exec", "ns-win", "readlink", "/proc/self/ns/net"]).trim());
  assert.equal(selfNet(), home);
  assert.throws(
    () =>
      inNetns(path, () => {
        throw new Error("boom");
      }),
    /boom/,
  );
  assert.equal(selfNet(), home, "back after a throw");
  assert.throws(
    () => inNetns(path, () => Promise.resolve(1)),
    (err: unknown) => err instanceof KernelError && /synchronous/.test(err.message),
  );
  assert.equal(selfNet(), home);
  assert.throws(
    () => inNetns(`${NETNS_DIR}/missing`, () => 1),
    (err: unknown) => err instanceof KernelError && err.errnoName === "ENOENT",
  );
  // Links made through a socket opened in the window land there, not here.
  const rtnl = Rtnl.open(path);
  try {
    rtnl.linkAdd({ name: "inside0", kind: "bridge" });
  } finally {
    rtnl.close();
  }
  assert.ok(ipLinkNames(path).includes("inside0"));
  assert.ok(!ipLinkNames().includes("inside0"));
});

test("sysctls read and written per netns", () => {
  const path = createNetns("ns-sys");
  assert.equal(readSysctl("net.ipv4.ip_forward"), "0");
  writeSysctl("net.ipv4.ip_forward", "1", path);
  assert.equal(readSysctl("net.ipv4.ip_forward", path), "1");
  assert.equal(readSysctl("net.ipv4.ip_forward"), "0", "the host's value is untouched");
  assert.equal(must(["ip", "netns", "exec", "ns-sys", "sysctl", "-n", "net.ipv4.ip_forward"]).trim(), "1");
  writeSysctl("net/ipv6/conf/default/accept_dad", "0", path);
  assert.equal(readSysctl("net.ipv6.conf.default.accept_dad", path), "0");
  assert.throws(
    () => readSysctl("net.ipv4.no_such_key"),
    (err: unknown) => err instanceof KernelError && err.errnoName === "ENOENT",
  );
});

test("timing: 100 netns, each with lo up and a veth pair whose peer is created inside (printed, not asserted)", () => {
  const rtnl = Rtnl.open();
  const t0 = process.hrtime.bigint();
  const paths: string[] = [];
  for (let i = 0; i < 100; i++) paths.push(createNetns(`tn${i}`));
  const t1 = process.hrtime.bigint();
  for (let i = 0; i < 100; i++)
    rtnl.linkAdd({ name: `tv${i}`, kind: "veth", up: true, peer: { name: "eth0", netns: paths[i]! } });
  const t2 = process.hrtime.bigint();
  for (let i = 0; i < 100; i++) rtnl.addrAdd(`tv${i}`, `10.200.${i}.1/24`);
  const t3 = process.hrtime.bigint();
  for (const p of paths) {
    const there = Rtnl.open(p);
    there.linkSet("lo", { up: true });
    there.close();
  }
  const t4 = process.hrtime.bigint();
  const us = (a: bigint, b: bigint) => (Number(b - a) / 1000 / 100).toFixed(0);
  console.log(
    `timing per item: netns create ${us(t0, t1)} us, veth pair (peer in netns) ${us(t1, t2)} us, ` +
      `addr add ${us(t2, t3)} us, open+lo up+close ${us(t3, t4)} us`,
  );
  assert.equal(ipLinkNames().filter((n) => n.startsWith("tv")).length, 100);
  assert.ok(ipLinkNames(paths[99]).includes("eth0"));
  rtnl.close();
});

test("nsidOf: the id a namespace holds for another, as `ip netns list-id` and the veth's link-netnsid show it", () => {
  const path = createNetns("ns-id");
  const host = Rtnl.open();
  try {
    // No link leads there yet: no id, and asking assigns none.
    assert.equal(host.nsidOf(path), undefined);
    assert.equal(host.nsidOf(path), undefined);
    host.linkAdd({ name: "nsid-h", kind: "veth", peer: { name: "nsid-p", netns: path } });
    // The kernel gives the peer's namespace an id as it lists the veth.
    const veth = ipj<{ ifname: string; link_netnsid?: number }>(["link", "show", "nsid-h"])[0]!;
    assert.equal(typeof veth.link_netnsid, "number");
    assert.equal(host.nsidOf(path), veth.link_netnsid);
    const listed = ipj<{ nsid: number; name?: string }>(["netns", "list-id"]);
    assert.ok(
      listed.some((n) => n.nsid === veth.link_netnsid && n.name === "ns-id"),
      JSON.stringify(listed),
    );
    // From the other side: the host's id in ns-id, once its veth end is listed there.
    const inside = Rtnl.open(path);
    try {
      inside.linkList();
      const peer = ipj<{ link_netnsid?: number }>(["link", "show", "nsid-p"], path)[0]!;
      assert.equal(inside.nsidOf("/proc/thread-self/ns/net"), peer.link_netnsid);
    } finally {
      inside.close();
    }
  } finally {
    host.linkDel("nsid-h");
    host.close();
    deleteNetns("ns-id");
  }
});
