import assert from "node:assert/strict";
import { test } from "node:test";
import { netctxJson, netctxOk } from "../utils/cli.ts";
import { addressesOf, addrs, links, routes } from "../utils/kernel-oracle.ts";
import { ping } from "../utils/ping.ts";

interface Inspect {
  name: string;
  level: string;
  networks: string[];
  addresses: string[];
  netns: string;
  interfaces: { name: string; mac?: string; hostIfname?: string; mtu: number }[];
}

test("two l2 contexts on a bridge network reach each other over IPv4 and IPv6", () => {
  netctxOk(
    "network",
    "create",
    "front",
    "--driver",
    "bridge",
    "--subnet",
    "10.61.0.0/24",
    "--subnet",
    "fd61::/64",
    "--mtu",
    "1400",
  );
  netctxOk(
    "create",
    "a",
    "--level",
    "l2",
    "--network",
    "front",
    "--ip",
    "10.61.0.50",
    "--mac",
    "02:11:22:33:44:55",
  );
  netctxOk("create", "b", "--level", "l2", "--network", "front");
  const a = netctxJson<Inspect>("inspect", "a");
  const b = netctxJson<Inspect>("inspect", "b");

  assert.equal(a.level, "l2");
  assert.deepEqual(a.networks, ["front"]);
  assert.equal(a.netns, "/run/netns/netctx-a");
  assert.ok(a.addresses.includes("10.61.0.50/24"));
  assert.equal(a.interfaces[0]?.mac, "02:11:22:33:44:55");
  // The kernel agrees with inspect: addresses, MAC, MTU, master, default routes.
  assert.deepEqual(addressesOf(a.netns, "eth0").sort(), [...a.addresses].sort());
  const eth0 = links(a.netns).find((l) => l.ifname === "eth0")!;
  assert.equal(eth0.address, "02:11:22:33:44:55");
  assert.equal(eth0.mtu, 1400);
  const bridge = links().find((l) => l.ifname === "nc-front")!;
  assert.equal(bridge.linkinfo?.info_kind, "bridge");
  assert.equal(links().find((l) => l.ifname === "nc-a")?.master, "nc-front");
  assert.deepEqual(addressesOf(undefined, "nc-front").sort(), ["10.61.0.1/24", "fd61::1/64"]);
  assert.equal(routes(4, a.netns).find((r) => r.dst === "default")?.gateway, "10.61.0.1");
  assert.equal(routes(6, a.netns).find((r) => r.dst === "default")?.gateway, "fd61::1");

  const bv4 = b.addresses.find((x) => !x.includes(":"))!.split("/")[0]!;
  const bv6 = b.addresses.find((x) => x.includes(":"))!.split("/")[0]!;
  assert.ok(ping(a.netns, bv4), `a -> b ${bv4}`);
  assert.ok(ping(a.netns, bv6), `a -> b ${bv6}`);
  assert.ok(ping(b.netns, "10.61.0.50"), "b -> a");
  assert.ok(ping(a.netns, "10.61.0.1"), "a -> gateway");
});

test("IPv6 link-local addresses come from netctx, without DAD, and only where IPv6 is used", () => {
  // v6: the context's eth0 holds the EUI-64 address of its MAC, usable at once (not tentative); v4-only: none at
  // all, so no router solicitation or MLD report is ever sent from it. Bridge ports hold no address either way.
  netctxOk(
    "network",
    "create",
    "dual",
    "--driver",
    "bridge",
    "--subnet",
    "10.62.0.0/24",
    "--subnet",
    "fd62::/64",
  );
  netctxOk("network", "create", "v4only", "--driver", "bridge", "--subnet", "10.63.0.0/24");
  netctxOk("create", "d", "--level", "l2", "--network", "dual", "--mac", "02:aa:bb:cc:dd:01");
  netctxOk("create", "e", "--level", "l2", "--network", "v4only");
  const linkLocal = (netns: string | undefined, ifname: string) =>
    addrs(netns)
      .filter((a) => a.ifname === ifname)
      .flatMap((a) => a.addr_info.filter((i) => i.local.startsWith("fe80")));

  const d = linkLocal("/run/netns/netctx-d", "eth0");
  assert.deepEqual(
    d.map((i) => `${i.local}/${i.prefixlen}`),
    ["fe80::aa:bbff:fecc:dd01/64"],
  );
  assert.ok(!d[0]?.tentative, "the link-local address skips DAD");
  assert.deepEqual(linkLocal("/run/netns/netctx-e", "eth0"), []);
  assert.deepEqual(linkLocal(undefined, "nc-d"), []);
  assert.deepEqual(linkLocal(undefined, "nc-e"), []);
  // The host reaches it over IPv6 at once, globally and on the link.
  const dv6 = netctxJson<Inspect>("inspect", "d").addresses.find((x) => x.includes(":"))!;
  assert.ok(ping("/proc/self/ns/net", dv6.split("/")[0]!), "host -> d over IPv6");
  assert.ok(ping("/proc/self/ns/net", "fe80::aa:bbff:fecc:dd01%nc-dual"), "host -> d link-local");

  // Multicast snooping would make every port change walk every port's timers (O(ports) per create).
  for (const name of ["nc-dual", "nc-v4only"]) {
    const bridge = links().find((l) => l.ifname === name)!;
    assert.equal(bridge.linkinfo?.info_data?.["mcast_snooping"], 0, name);
  }
});
