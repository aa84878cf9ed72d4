import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { netctx, netctxJson, netctxOk } from "../utils/cli.ts";
import { addrs, links, netnsNames, nftRuleset, routes } from "../utils/kernel-oracle.ts";
import { eventually } from "../utils/wait.ts";

interface NetView {
  leases: { address: string; owner: string }[];
}

test("rm removes every link, netns, address, route, nft element and lease, and is idempotent", () => {
  netctxOk(
    "network",
    "create",
    "br",
    "--driver",
    "bridge",
    "--subnet",
    "10.71.0.0/24",
    "--subnet",
    "fd71::/64",
    "--nat",
  );
  netctxOk("network", "create", "rt", "--driver", "routed", "--subnet", "10.72.0.0/24", "--internal");
  // A bridge reports "linkdown" once its last port is gone; compare routes without their flags.
  const routeKeys = () => routes(4).map((r) => `${r.dst} ${r.dev} ${r.gateway ?? ""}`);
  const before = {
    links: links()
      .map((l) => l.ifname)
      .sort(),
    routes: routeKeys(),
    nft: nftRuleset(),
    netns: netnsNames(),
  };
  netctxOk("create", "x", "--level", "l2", "--network", "br", "--network", "rt");
  assert.ok(links().some((l) => l.ifname === "nc-x"));
  assert.ok(links().some((l) => l.ifname === "nc-x.1"));
  assert.ok(netnsNames().includes("netctx-x"));
  assert.equal(netctxJson<NetView>("network", "inspect", "rt").leases.length, 1);
  assert.notEqual(nftRuleset(), before.nft, "the routed context's interface is in our nft sets");

  netctxOk("rm", "x");
  const linkNames = () =>
    links()
      .map((l) => l.ifname)
      .sort();
  assert.deepEqual(eventually(linkNames, before.links), before.links);
  assert.deepEqual(netnsNames(), before.netns);
  assert.deepEqual(routeKeys(), before.routes);
  assert.equal(nftRuleset(), before.nft);
  assert.deepEqual(
    addrs().flatMap((a) =>
      a.addr_info.filter((i) => i.local.startsWith("10.72.")).map((i) => `${a.ifname} ${i.local}`),
    ),
    ["nc-rt 10.72.0.1"],
    "no address of the context's left, the network's gateway stays with the network",
  );
  assert.equal(netctxJson<NetView>("network", "inspect", "br").leases.length, 0);
  assert.deepEqual(netctxJson<unknown[]>("ls"), []);

  // as docker's: a missing name is an error, unless --ignore (issue 17)
  const again = netctx("rm", "x");
  assert.equal(again.code, 1);
  assert.match(again.stderr, /does not exist/);
  const ignored = netctx("rm", "--ignore", "x");
  assert.equal(ignored.code, 0);
  assert.match(ignored.stderr, /does not exist/);
});

test("a removed context's name and address can be used again at once", () => {
  netctxOk("create", "y", "--level", "l2", "--network", "br", "--ip", "10.71.0.9");
  netctxOk("rm", "y");
  netctxOk("create", "y", "--level", "l2", "--network", "br", "--ip", "10.71.0.9");
  netctxOk("rm", "y");
});

test("exec runs a command inside the context and returns its exit code", () => {
  netctxOk("create", "z", "--level", "l2", "--network", "br");
  const out = netctxOk("exec", "z", "--", "ip", "-br", "link");
  assert.match(out, /^eth0@/m);
  assert.doesNotMatch(out, /nc-br/, "the host's bridge is not visible inside");
  assert.equal(netctx("exec", "z", "--", "sh", "-c", "exit 7").code, 7);
  netctxOk("rm", "z");
});

test("a failure half-way through create undoes what it made", () => {
  // A link squatting on the host-side veth name is refused up front (issue 17: it is nobody's leftover of ours).
  execFileSync("ip", ["link", "add", "nc-w", "type", "bridge"]);
  const squat = netctx("create", "w", "--level", "l2", "--network", "br", "--ip", "10.71.0.77");
  assert.match(squat.stderr, /^error: name: device nc-w exists and no netctx store marked it as its own/);
  execFileSync("ip", ["link", "del", "nc-w"]);
  // One squatting on the name of its ifb makes create fail after netns, veth and addresses were made.
  execFileSync("ip", ["link", "add", "nb-w", "type", "bridge"]);
  const before = { links: links().length, netns: netnsNames() };
  const r = netctx(
    "create",
    "w",
    "--level",
    "l2",
    "--network",
    "br",
    "--ip",
    "10.71.0.77",
    "--bandwidth",
    "10mbit/10mbit",
  );
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^error: .*EEXIST/);
  assert.equal(r.stderr.trim().split("\n").length, 1);
  assert.equal(
    eventually(() => links().length, before.links),
    before.links,
  );
  assert.deepEqual(netnsNames(), before.netns);
  assert.deepEqual(netctxJson<unknown[]>("ls"), []);
  assert.equal(netctxJson<NetView>("network", "inspect", "br").leases.length, 0);
  execFileSync("ip", ["link", "del", "nb-w"]);
  netctxOk("create", "w", "--level", "l2", "--network", "br", "--ip", "10.71.0.77");
});

test("a network in use cannot be removed; an unused one leaves nothing behind", () => {
  const r = netctx("network", "rm", "br");
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /in use by "w"/);
  netctxOk("rm", "w");
  netctxOk("network", "rm", "br", "rt");
  assert.deepEqual(
    eventually(() => links().map((l) => l.ifname), ["lo"]),
    ["lo"],
  );
  assert.deepEqual(netctxJson<unknown[]>("network", "ls"), []);
});
