import assert from "node:assert/strict";
import { after, test } from "node:test";
import { NetctxError } from "../../src/errors.ts";
import { KernelError } from "../../src/kernel/errors.ts";
import { createNetns } from "../../src/kernel/netns.ts";
import { Rtnl } from "../../src/kernel/rtnl.ts";
import { ipj, ipLink, ipLinkNames, linkInfo } from "../utils/kernel-oracle.ts";

const rtnl = Rtnl.open();
after(() => rtnl.close());

test("veth with its peer created directly in another netns, both up", () => {
  const ns = createNetns("link-peer");
  rtnl.linkAdd({
    name: "vp0",
    kind: "veth",
    up: true,
    mtu: 1450,
    peer: { name: "eth0", netns: ns, up: true },
  });
  const host = ipLink("vp0");
  assert.equal(linkInfo(host).info_kind, "veth");
  assert.equal(host.mtu, 1450);
  assert.ok((host.flags as string[]).includes("UP"));
  assert.ok(!ipLinkNames().includes("eth0"), "the peer must not appear in the creating netns");
  const peer = ipLink("eth0", ns);
  assert.equal(linkInfo(peer).info_kind, "veth");
  assert.equal(peer.mtu, 1450, "the peer follows the link's MTU");
  assert.ok((peer.flags as string[]).includes("UP"));
  // Both ends up: the carrier is there on both sides.
  assert.equal(ipLink("vp0").operstate, "UP");
  const ours = rtnl.linkGet("vp0");
  assert.equal(ours?.kind, "veth");
  assert.equal(ours?.up, true);
  assert.equal(ours?.linkIndex, peer.ifindex, "IFLA_LINK names the peer's index in its netns");
  const there = Rtnl.open(ns);
  try {
    assert.equal(there.linkGet("eth0")?.index, peer.ifindex);
    assert.equal(there.linkGet("vp0"), undefined);
  } finally {
    there.close();
  }
});

test("bridge with mtu, mac, group, alias; veth enslaved with master; rename", () => {
  rtnl.linkAdd({
    name: "br-t",
    kind: "bridge",
    up: true,
    mtu: 1400,
    mac: "02:aa:bb:cc:dd:01",
    group: 7,
    alias: "netctx:t",
  });
  const br = ipLink("br-t");
  assert.equal(linkInfo(br).info_kind, "bridge");
  assert.equal(br.mtu, 1400);
  assert.equal(br.address, "02:aa:bb:cc:dd:01");
  assert.equal(br.group, "7");
  assert.equal(br.ifalias, "netctx:t");
  assert.ok((br.flags as string[]).includes("UP"));

  rtnl.linkAdd({ name: "vb0", kind: "veth", master: "br-t", mtu: 1400, group: 7, peer: { name: "vb0p" } });
  assert.equal(ipLink("vb0").master, "br-t");
  assert.equal(linkInfo(ipLink("vb0")).info_slave_kind, "bridge");
  assert.equal(rtnl.linkGet("vb0")?.master, br.ifindex);

  rtnl.linkSet("vb0p", { master: "br-t", up: true, mtu: 1300, mac: "02:aa:bb:cc:dd:02", alias: "peer" });
  let p = ipLink("vb0p");
  assert.equal(p.master, "br-t");
  assert.equal(p.mtu, 1300);
  assert.equal(p.address, "02:aa:bb:cc:dd:02");
  assert.equal(p.ifalias, "peer");
  assert.ok((p.flags as string[]).includes("UP"));
  rtnl.linkSet("vb0p", { master: null, up: false, name: "vb0renamed" });
  p = ipLink("vb0renamed");
  assert.equal(p.master, undefined);
  assert.ok(!(p.flags as string[]).includes("UP"));
  assert.ok(!ipLinkNames().includes("vb0p"));

  const ours = rtnl.linkGet("br-t");
  assert.deepEqual(
    {
      mtu: ours?.mtu,
      mac: ours?.mac,
      group: ours?.group,
      alias: ours?.alias,
      kind: ours?.kind,
      up: ours?.up,
    },
    { mtu: 1400, mac: "02:aa:bb:cc:dd:01", group: 7, alias: "netctx:t", kind: "bridge", up: true },
  );
});

test("bridge options: stp; vlan filtering reported as unsupported where the kernel lacks it", () => {
  rtnl.linkAdd({ name: "br-opt", kind: "bridge", bridge: { stp: true } });
  assert.equal(linkInfo(ipLink("br-opt")).info_data?.stp_state, 1);
  rtnl.linkAdd({ name: "br-nostp", kind: "bridge", bridge: { stp: false } });
  assert.equal(linkInfo(ipLink("br-nostp")).info_data?.stp_state, 0);
  try {
    rtnl.linkAdd({ name: "br-vf", kind: "bridge", bridge: { vlanFiltering: true } });
    assert.equal(linkInfo(ipLink("br-vf")).info_data?.vlan_filtering, 1);
  } catch (err) {
    assert.ok(err instanceof NetctxError && err.code === "unsupported", String(err));
    assert.match(err.message, /VLAN filtering is not available/);
    assert.ok(!ipLinkNames().includes("br-vf"));
  }
});

test("macvlan on a veth parent", () => {
  rtnl.linkAdd({ name: "mvp", kind: "veth", up: true, peer: { name: "mvpp" } });
  rtnl.linkAdd({ name: "mv0", kind: "macvlan", macvlan: { parent: "mvp", mode: "bridge" }, up: true });
  rtnl.linkAdd({ name: "mv1", kind: "macvlan", macvlan: { parent: "mvp", mode: "private" } });
  const mv0 = ipLink("mv0");
  assert.equal(linkInfo(mv0).info_kind, "macvlan");
  assert.equal(linkInfo(mv0).info_data?.mode, "bridge");
  assert.equal(mv0.link, "mvp");
  assert.equal(linkInfo(ipLink("mv1")).info_data?.mode, "private");
  assert.equal(rtnl.linkGet("mv0")?.linkIndex, ipLink("mvp").ifindex);
});

test("vxlan with vni, port, local, remote, dev and learning", () => {
  rtnl.linkAdd({ name: "vxu", kind: "veth", peer: { name: "vxup" } });
  rtnl.linkAdd({
    name: "vx0",
    kind: "vxlan",
    vxlan: { vni: 4242, port: 4790, local: "192.0.2.1", remote: "192.0.2.2", dev: "vxu", learning: false },
  });
  const data = linkInfo(ipLink("vx0")).info_data ?? {};
  assert.equal(data.id, 4242);
  assert.equal(data.port, 4790);
  assert.equal(data.local, "192.0.2.1");
  assert.equal(data.remote, "192.0.2.2");
  assert.equal(data.link, "vxu");
  assert.equal(data.learning, false);
  assert.deepEqual(rtnl.linkGet("vx0")?.vxlan, {
    vni: 4242,
    port: 4790,
    learning: false,
    local: "192.0.2.1",
    remote: "192.0.2.2",
    dev: ipLink("vxu").ifindex,
  });
  rtnl.linkAdd({ name: "vx6", kind: "vxlan", vxlan: { vni: 7, local: "fd00::1" } });
  const d6 = linkInfo(ipLink("vx6")).info_data ?? {};
  assert.equal(d6.local6, "fd00::1");
  assert.equal(d6.port, 4789, "IANA port by default, not the kernel's 8472");
  assert.deepEqual(rtnl.linkGet("vx6")?.vxlan, { vni: 7, port: 4789, learning: true, local: "fd00::1" });
  assert.equal(rtnl.linkGet("vxu")?.vxlan, undefined);
});

test("move a link into another netns with linkSet", () => {
  const ns = createNetns("link-move");
  rtnl.linkAdd({ name: "mvx", kind: "veth", peer: { name: "mvxp" } });
  rtnl.linkSet("mvxp", { netns: ns, name: "eth1" });
  assert.ok(!ipLinkNames().includes("mvxp"));
  assert.ok(ipLinkNames(ns).includes("eth1"));
});

test("errors: EEXIST, ENODEV, invalid names", () => {
  rtnl.linkAdd({ name: "dup0", kind: "bridge" });
  assert.throws(
    () => rtnl.linkAdd({ name: "dup0", kind: "bridge" }),
    (err: unknown) =>
      err instanceof KernelError &&
      err.code === "kernel" &&
      err.errnoName === "EEXIST" &&
      err.errno === 17 &&
      err.op === "link add dup0" &&
      err.message === "link add dup0: EEXIST: File exists",
  );
  assert.throws(
    () => rtnl.linkDel("missing0"),
    (err: unknown) =>
      err instanceof KernelError &&
      err.errnoName === "ENODEV" &&
      /link del missing0: ENODEV/.test(err.message),
  );
  assert.throws(
    () => rtnl.linkSet("missing0", { up: true }),
    (err: unknown) => err instanceof KernelError && err.errnoName === "ENODEV",
  );
  assert.equal(rtnl.linkGet("missing0"), undefined);
  assert.throws(
    () =>
      rtnl.linkAdd({ name: "vx-dup", kind: "vxlan", vxlan: { vni: 4242, port: 4790, local: "192.0.2.1" } }),
    (err: unknown) =>
      err instanceof KernelError && err.errnoName === "EEXIST" && /VNI already exists/.test(err.extack ?? ""),
    "a second VXLAN with the same VNI and port: the kernel's extack text comes through",
  );
  assert.throws(
    () => rtnl.linkAdd({ name: "much-too-long-name", kind: "bridge" }),
    (err: unknown) => err instanceof NetctxError && err.code === "invalid",
  );
  assert.throws(
    () => rtnl.linkAdd({ name: "badmac", kind: "bridge", mac: "zz" }),
    (err: unknown) => err instanceof NetctxError && err.code === "invalid",
  );
  // The socket is still in step after all those errors.
  assert.equal(rtnl.linkGet("dup0")?.kind, "bridge");
});

test("unknown link kinds are reported as unsupported, not a crash", () => {
  for (const kind of ["ipvlan", "dummy", "no-such-kind"]) {
    assert.throws(
      () => rtnl.linkAdd({ name: "unk0", kind }),
      (err: unknown) =>
        err instanceof NetctxError &&
        err.code === "unsupported" &&
        err.message ===
          `link kind "${kind}" is not available in this kernel (EOPNOTSUPP: Unknown device type)`,
    );
  }
  assert.ok(!ipLinkNames().includes("unk0"));
});

test("linkDel and linkDelGroup", () => {
  rtnl.linkAdd({ name: "del0", kind: "veth", peer: { name: "del0p" } });
  rtnl.linkDel("del0");
  assert.ok(!ipLinkNames().includes("del0"));
  assert.ok(!ipLinkNames().includes("del0p"), "deleting one end of a veth removes the pair");
  for (let i = 0; i < 5; i++) rtnl.linkAdd({ name: `grp${i}`, kind: "bridge", group: 99 });
  rtnl.linkAdd({ name: "grpkeep", kind: "bridge", group: 98 });
  rtnl.linkDelGroup(99);
  const names = ipLinkNames();
  assert.equal(names.filter((n) => n.startsWith("grp")).join(), "grpkeep");
});

test("lo of a fresh netns comes up through an Rtnl opened there", () => {
  const ns = createNetns("link-lo");
  assert.ok(!(ipLink("lo", ns).flags as string[]).includes("UP"));
  const there = Rtnl.open(ns);
  try {
    there.linkSet("lo", { up: true });
  } finally {
    there.close();
  }
  assert.ok((ipLink("lo", ns).flags as string[]).includes("UP"));
  assert.deepEqual(
    ipj(["addr", "show", "dev", "lo"], ns).flatMap((a) =>
      (a.addr_info as { local: string }[]).map((i) => i.local),
    ),
    ["127.0.0.1", "::1"],
  );
});

test("a dump of 1200 links arrives complete and matches ip", () => {
  const ns = createNetns("link-many");
  const there = Rtnl.open(ns);
  try {
    for (let i = 0; i < 600; i++) there.linkAdd({ name: `m${i}`, kind: "veth", peer: { name: `m${i}p` } });
    const ours = there.linkList();
    assert.equal(ours.length, 1201);
    const theirs = ipj(["link", "show"], ns);
    assert.deepEqual(
      ours.map((l) => `${l.index}:${l.name}`).sort(),
      theirs.map((l) => `${l.ifindex}:${l.ifname}`).sort(),
    );
  } finally {
    there.close();
  }
});
