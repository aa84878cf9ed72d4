import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { netctx, netctxJson, netctxOk } from "../utils/cli.ts";
import { addVethNetns, delVethNetns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";

/** An "outside" namespace the host reaches on a veth; it has no route back to any context subnet. */
const OUTSIDE = { name: "outside", hostIfname: "up0" };

before(() => {
  addVethNetns({
    ...OUTSIDE,
    hostAddresses: ["203.0.113.1/24", "2001:db8:99::1/64"],
    addresses: ["203.0.113.2/24", "2001:db8:99::2/64"],
  });
});

after(() => delVethNetns(OUTSIDE));

function netnsOf(name: string): string {
  return netctxJson<{ netns: string }>("inspect", name).netns;
}

test("a context reaches the outside through NAT, v4 and v6", () => {
  netctxOk(
    "network",
    "create",
    "natted",
    "--driver",
    "bridge",
    "--subnet",
    "10.63.0.0/24",
    "--subnet",
    "fd63::/64",
    "--nat",
  );
  netctxOk("create", "c1", "--level", "l2", "--network", "natted");
  assert.ok(ping(netnsOf("c1"), "203.0.113.2"), "v4 through masquerade");
  assert.ok(ping(netnsOf("c1"), "2001:db8:99::2"), "v6 through masquerade");
});

test("a routed network with NAT reaches the outside too", () => {
  netctxOk("network", "create", "rnat", "--driver", "routed", "--subnet", "10.66.0.0/24", "--nat");
  netctxOk("create", "r1", "--level", "l2", "--network", "rnat");
  assert.ok(ping(netnsOf("r1"), "203.0.113.2"));
});

test("without NAT the outside cannot answer", () => {
  netctxOk("network", "create", "plain", "--driver", "bridge", "--subnet", "10.64.0.0/24");
  netctxOk("create", "c2", "--level", "l2", "--network", "plain");
  assert.ok(!ping(netnsOf("c2"), "203.0.113.2"));
  assert.ok(ping(netnsOf("c2"), "10.64.0.1"), "gateway still reachable");
});

test("an internal network has no egress (NAT cannot be asked for with it), but reaches its gateway and members", () => {
  const both = netctx(
    "network",
    "create",
    "inner",
    "--driver",
    "bridge",
    "--subnet",
    "10.65.0.0/24",
    "--nat",
    "--internal",
  );
  assert.notEqual(both.code, 0);
  assert.match(both.stderr, /^error: .*--nat.*--internal[^\n]*\n$/);
  netctxOk("network", "create", "inner", "--driver", "bridge", "--subnet", "10.65.0.0/24", "--internal");
  netctxOk("create", "c3", "--level", "l2", "--network", "inner");
  netctxOk("create", "c4", "--level", "l2", "--network", "inner");
  assert.ok(!ping(netnsOf("c3"), "203.0.113.2"), "no egress");
  assert.ok(ping(netnsOf("c3"), "10.65.0.1"), "gateway");
  const c4 = netctxJson<{ addresses: string[] }>("inspect", "c4").addresses[0]!.split("/")[0]!;
  assert.ok(ping(netnsOf("c3"), c4), "member");
  // Another network's context cannot reach into it either.
  assert.ok(!ping(netnsOf("c1"), c4), "no way in from another network");
});
