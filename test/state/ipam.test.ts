import assert from "node:assert/strict";
import { test } from "node:test";
import type { Lease } from "../../src/model/records.ts";
import { Store } from "../../src/state/store.ts";
import { fails, freshDir, network } from "./helpers.ts";

const addrs = (leases: Lease[]) => leases.map((l) => l.address);

function storeWithFront(): Store {
  const store = Store.open(freshDir("ipam"));
  store.insertNetwork(
    network("front", [
      { cidr: "10.1.0.0/24", gateway: "10.1.0.1" },
      { cidr: "fd00:1::/64", gateway: "fd00:1::1" },
    ]),
  );
  return store;
}

test("dual stack: one lease per subnet, lowest free address, gateway and network address skipped", () => {
  const store = storeWithFront();
  const web = store.allocate("front", "web");
  assert.deepEqual(web, [
    { network: "front", subnet: "10.1.0.0/24", address: "10.1.0.2", prefix: 24, owner: "web" },
    { network: "front", subnet: "fd00:1::/64", address: "fd00:1::2", prefix: 64, owner: "web" },
  ]);
  assert.deepEqual(addrs(store.allocate("front", "db")), ["10.1.0.3", "fd00:1::3"]);
  assert.deepEqual(store.leases({ owner: "web" }), web);
  assert.equal(store.leases({ network: "front" }).length, 4);
  assert.equal(store.leases().length, 4);
  store.close();
});

test("requested addresses go to the subnet that contains them; the other subnets get automatic ones", () => {
  const store = storeWithFront();
  assert.deepEqual(addrs(store.allocate("front", "a", ["10.1.0.50"])), ["10.1.0.50", "fd00:1::2"]);
  assert.deepEqual(addrs(store.allocate("front", "b", ["FD00:1::0:BEEF"])), ["10.1.0.2", "fd00:1::beef"]);
  assert.deepEqual(addrs(store.allocate("front", "c", ["fd00:1::7", "10.1.0.7"])), ["10.1.0.7", "fd00:1::7"]);
  // Automatic choice fills around requested ones.
  assert.deepEqual(addrs(store.allocate("front", "d")), ["10.1.0.3", "fd00:1::3"]);
  store.close();
});

test("requests that cannot be honoured are refused with one line naming the field", () => {
  const store = storeWithFront();
  store.allocate("front", "web", ["10.1.0.5"]);
  fails(
    () => store.allocate("front", "x", ["10.1.0.5"]),
    "conflict",
    'ip: 10.1.0.5 is already in use by "web"',
  );
  fails(
    () => store.allocate("front", "x", ["10.1.0.1"]),
    "invalid",
    'ip: 10.1.0.1 is the gateway of network "front"',
  );
  fails(
    () => store.allocate("front", "x", ["fd00:1::1"]),
    "invalid",
    'ip: fd00:1::1 is the gateway of network "front"',
  );
  fails(
    () => store.allocate("front", "x", ["10.1.0.0"]),
    "invalid",
    "ip: 10.1.0.0 is the network address of 10.1.0.0/24",
  );
  fails(
    () => store.allocate("front", "x", ["fd00:1::"]),
    "invalid",
    "ip: fd00:1:: is the network address of fd00:1::/64",
  );
  fails(
    () => store.allocate("front", "x", ["10.1.0.255"]),
    "invalid",
    "ip: 10.1.0.255 is the broadcast address of 10.1.0.0/24",
  );
  fails(
    () => store.allocate("front", "x", ["10.9.9.9"]),
    "invalid",
    'ip: 10.9.9.9 is outside the subnets of network "front" (10.1.0.0/24, fd00:1::/64)',
  );
  fails(
    () => store.allocate("front", "x", ["10.1.0.8", "10.1.0.9"]),
    "invalid",
    'ip: 10.1.0.8 and 10.1.0.9 are both in 10.1.0.0/24 of network "front": one address per subnet',
  );
  fails(
    () => store.allocate("front", "x", ["10.1.0.8", "10.1.0.8"]),
    "invalid",
    "ip: 10.1.0.8 is requested twice",
  );
  fails(
    () => store.allocate("front", "x", ["10.1.0.300"]),
    "invalid",
    'ip: "10.1.0.300" is not an IP address',
  );
  fails(() => store.allocate("nope", "x"), "not-found", 'network "nope" does not exist');
  fails(
    () => store.allocate("front", "web"),
    "conflict",
    'owner: "web" already holds 10.1.0.5, fd00:1::2 on network "front"',
  );
  fails(() => store.allocate("front", ""), "invalid", "owner: a lease owner is required");
  assert.deepEqual(
    store.leases().map((l) => l.owner),
    ["web", "web"],
    "refused requests left nothing behind",
  );
  store.close();
});

test("a /30 with a gateway has exactly one address to give", () => {
  const store = Store.open(freshDir("slash30"));
  store.insertNetwork(network("tiny", [{ cidr: "10.9.0.0/30", gateway: "10.9.0.1" }]));
  // .0 network, .1 gateway, .3 broadcast: only .2.
  assert.deepEqual(addrs(store.allocate("tiny", "a")), ["10.9.0.2"]);
  fails(
    () => store.allocate("tiny", "b"),
    "exhausted",
    'network "tiny": no free address left in 10.9.0.0/30',
  );
  store.release("tiny", "a");
  assert.deepEqual(addrs(store.allocate("tiny", "b")), ["10.9.0.2"]);
  store.close();
});

test("/31 and /32 subnets (RFC 3021) use every address", () => {
  const store = Store.open(freshDir("p2p"));
  store.insertNetwork(network("p2p", [{ cidr: "10.9.1.0/31" }, { cidr: "fd00:9::/127" }]));
  store.insertNetwork(network("one", [{ cidr: "10.9.2.7/32" }]));
  assert.deepEqual(addrs(store.allocate("p2p", "a")), ["10.9.1.0", "fd00:9::"]);
  assert.deepEqual(addrs(store.allocate("p2p", "b", ["10.9.1.1"])), ["10.9.1.1", "fd00:9::1"]);
  fails(() => store.allocate("p2p", "c"), "exhausted", 'network "p2p": no free address left in 10.9.1.0/31');
  assert.deepEqual(addrs(store.allocate("one", "a")), ["10.9.2.7"]);
  fails(() => store.allocate("one", "b"), "exhausted", 'network "one": no free address left in 10.9.2.7/32');
  store.close();
});

test("an allocation is all or nothing, also inside an outer transaction that catches the error", () => {
  const store = Store.open(freshDir("atomic"));
  store.insertNetwork(
    network("half", [{ cidr: "fd00:5::/64" }, { cidr: "10.9.0.0/30", gateway: "10.9.0.1" }]),
  );
  store.allocate("half", "first");
  fails(
    () => store.allocate("half", "second"),
    "exhausted",
    'network "half": no free address left in 10.9.0.0/30',
  );
  assert.deepEqual(store.leases({ owner: "second" }), [], "the v6 lease picked before the failure is gone");
  store.transaction(() => {
    store.insertContext({ name: "second", level: "l2", status: "creating", spec: { attachments: [] } });
    assert.throws(() => store.allocate("half", "second"));
  });
  assert.deepEqual(store.leases({ owner: "second" }), []);
  assert.ok(store.getContext("second"), "the outer transaction's own work committed");
  store.close();
});

test("release, releaseAll and reuse; networks with leases cannot be deleted or lose their subnet", () => {
  const store = storeWithFront();
  store.insertNetwork(network("back", [{ cidr: "10.2.0.0/24" }]));
  for (const owner of ["a", "b", "c"]) store.allocate("front", owner);
  store.allocate("back", "b");
  assert.equal(store.release("front", "b"), 2);
  assert.equal(store.release("front", "b"), 0);
  // The lowest free address comes back first.
  assert.deepEqual(addrs(store.allocate("front", "d")), ["10.1.0.3", "fd00:1::3"]);
  assert.deepEqual(addrs(store.allocate("front", "e")), ["10.1.0.5", "fd00:1::5"]);
  fails(() => store.deleteNetwork("back"), "conflict", 'network: network "back" is still used by "b"');
  fails(
    () => store.updateNetwork(network("front", [{ cidr: "10.1.0.0/24", gateway: "10.1.0.1" }])),
    "conflict",
    'subnet: cannot remove fd00:1::/64 from network "front": 4 addresses are leased in it',
  );
  fails(
    () =>
      store.updateNetwork(
        network("front", [
          { cidr: "10.1.0.0/24", gateway: "10.1.0.2" },
          { cidr: "fd00:1::/64", gateway: "fd00:1::1" },
        ]),
      ),
    "conflict",
    'gateway: 10.1.0.2 is already in use by "a"',
  );
  assert.equal(store.releaseAll("b"), 1);
  assert.equal(store.deleteNetwork("back"), true);
  // Moving the gateway frees the old one for automatic allocation.
  store.updateNetwork(
    network("front", [
      { cidr: "10.1.0.0/24", gateway: "10.1.0.254" },
      { cidr: "fd00:1::/64", gateway: "fd00:1::1" },
    ]),
  );
  assert.deepEqual(addrs(store.allocate("front", "f")), ["10.1.0.1", "fd00:1::6"]);
  assert.equal(store.releaseAll("nobody"), 0);
  store.close();
});

test("a /64 with 1000 leases allocates fast and never scans the address space", () => {
  const store = Store.open(freshDir("v6big"));
  store.insertNetwork(network("v6", [{ cidr: "fd00:64::/64", gateway: "fd00:64::1" }]));
  // 500 requested far up the range, 500 automatic at the bottom: scanning the /64 would never finish.
  store.transaction(() => {
    for (let i = 0; i < 500; i++) store.allocate("v6", `r${i}`, [`fd00:64::ffff:${(i + 1).toString(16)}`]);
  });
  const t0 = performance.now();
  for (let i = 0; i < 500; i++) store.allocate("v6", `a${i}`);
  const bulk = performance.now() - t0;
  assert.equal(store.leases({ network: "v6" }).length, 1000);
  assert.equal(store.leases({ owner: "a499" })[0]?.address, "fd00:64::1f5");
  // Free a hole low down: the next allocation finds it, then continues after the dense block.
  store.release("v6", "a10");
  const t1 = performance.now();
  assert.equal(store.allocate("v6", "n1")[0]?.address, "fd00:64::c");
  assert.equal(store.allocate("v6", "n2")[0]?.address, "fd00:64::1f6");
  const single = (performance.now() - t1) / 2;
  assert.ok(bulk < 5000, `500 allocations took ${bulk.toFixed(0)} ms`);
  assert.ok(single < 50, `an allocation after a release took ${single.toFixed(1)} ms`);
  assert.equal(new Set(store.leases().map((l) => l.address)).size, 1001);

  // A /8 likewise.
  store.insertNetwork(network("v4big", [{ cidr: "10.0.0.0/8", gateway: "10.0.0.1" }]));
  store.allocate("v4big", "top", ["10.255.255.254"]);
  assert.deepEqual(addrs(store.allocate("v4big", "x")), ["10.0.0.2"]);
  fails(
    () => store.allocate("v4big", "y", ["10.255.255.255"]),
    "invalid",
    "ip: 10.255.255.255 is the broadcast address of 10.0.0.0/8",
  );
  store.close();
});
