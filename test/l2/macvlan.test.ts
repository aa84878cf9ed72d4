/**
 * The macvlan driver (issue 16: a driver is one file and a line in its registry): contexts get a macvlan in bridge
 * mode on the parent the network names, and meet each other and the machines of the parent's segment there. Here
 * the segment is a veth into an "outside" namespace that plays the LAN's router.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { netctx, netctxJson, netctxOk } from "../utils/cli.ts";
import { ipLink, links } from "../utils/kernel-oracle.ts";
import { addVethNetns, contextNetns, delVethNetns, netnsPath } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";
import { eventually } from "../utils/wait.ts";

const OUTSIDE = { name: "lan-router", hostIfname: "lan0" };
const ROUTER4 = "10.93.0.254";
const ROUTER6 = "fd93::fe";

after(() => delVethNetns(OUTSIDE));

interface Inspect {
  addresses: string[];
  netns: string;
}

test("bad macvlan networks are refused naming the field, and leave nothing behind", () => {
  const cases: [string[], RegExp][] = [
    [[], /parent/],
    [["--parent", "nosuchdev0"], /parent: device nosuchdev0 does not exist/],
    [["--parent", "a-very-long-name0"], /parent/],
    [["--parent", "lo", "--nat"], /nat/],
  ];
  for (const [args, message] of cases) {
    const r = netctx("network", "create", "bad", "--driver", "macvlan", "--subnet", "10.94.0.0/24", ...args);
    assert.notEqual(r.code, 0, args.join(" "));
    assert.match(r.stderr, message, args.join(" "));
    assert.equal(r.stderr.trim().split("\n").length, 1, "one line");
  }
  assert.deepEqual(netctxJson<unknown[]>("network", "ls", "--json"), []);
});

test("two contexts and a machine on the parent's segment reach each other through macvlans in bridge mode", () => {
  addVethNetns({ ...OUTSIDE, addresses: [`${ROUTER4}/24`, `${ROUTER6}/64`] });
  const before = links().map((l) => l.ifname);
  netctxOk(
    "network",
    "create",
    "lan",
    "--driver",
    "macvlan",
    "--parent",
    OUTSIDE.hostIfname,
    "--subnet",
    "10.93.0.0/24",
    "--gateway",
    ROUTER4,
    "--subnet",
    "fd93::/64",
    "--gateway",
    ROUTER6,
  );
  netctxOk("create", "m1", "--level", "l2", "--network", "lan");
  netctxOk("create", "m2", "--level", "l2", "--network", "lan");
  const m1 = netctxJson<Inspect>("inspect", "m1");
  const m2 = netctxJson<Inspect>("inspect", "m2");
  const v4 = (i: Inspect) => i.addresses.find((a) => !a.includes(":"))!.split("/")[0]!;
  const v6 = (i: Inspect) => i.addresses.find((a) => a.includes(":"))!.split("/")[0]!;

  // The kernel's own view: a macvlan in bridge mode on the parent inside each context, nothing new on the host.
  const eth0 = ipLink<{ link?: string; linkinfo?: { info_kind?: string; info_data?: { mode?: string } } }>(
    "eth0",
    contextNetns("m1"),
  );
  assert.equal(eth0.linkinfo?.info_kind, "macvlan");
  assert.equal(eth0.linkinfo?.info_data?.mode, "bridge");
  assert.deepEqual(
    links().map((l) => l.ifname),
    before,
    "a macvlan network makes no host-side device",
  );

  const outside = netnsPath(OUTSIDE.name);
  assert.ok(ping(contextNetns("m1"), v4(m2), { tries: 3 }), "m1 -> m2 (IPv4)");
  assert.ok(ping(contextNetns("m2"), v4(m1), { tries: 3 }), "m2 -> m1 (IPv4)");
  assert.ok(ping(contextNetns("m1"), ROUTER4, { tries: 3 }), "m1 -> the router on the segment");
  assert.ok(ping(outside, v4(m2), { tries: 3 }), "the router -> m2");
  assert.ok(ping(contextNetns("m2"), v6(m1), { tries: 3 }), "m2 -> m1 (IPv6)");
  assert.ok(ping(outside, v6(m1), { tries: 3 }), "the router -> m1 (IPv6)");
  // Its default route is the segment's router, as the network says.
  const route = netctxOk("exec", "m1", "--", "ip", "-4", "route", "show", "default");
  assert.match(route, new RegExp(`default via ${ROUTER4.replaceAll(".", "\\.")} dev eth0`));

  // gc knows nothing of macvlan and has nothing to do: the driver declares what it owns.
  assert.deepEqual(netctxJson<{ actions: unknown[] }>("gc", "--dry-run", "--json").actions, []);

  netctxOk("rm", "m1");
  // The kernel dismantles a deleted namespace (and the macvlan in it) on its own schedule: slow on a busy host.
  assert.equal(
    eventually(() => ping(contextNetns("m2"), v4(m1)), false),
    false,
    "m1's address is gone with it",
  );
  netctxOk("rm", "m2");
  netctxOk("network", "rm", "lan");
  assert.deepEqual(
    links().map((l) => l.ifname),
    before,
  );
});
