/**
 * The bridge shortcut (networks/bridge-shortcut.ts): between contexts of one bridge network, unicast frames go from
 * one context's port straight into the other context (bpf_redirect_peer), so the receiver's host-side veth never
 * transmits them: its tx counter is the proof on the wire. Frames for the gateway enter the bridge device directly:
 * a counter at bridge prerouting is the proof there. Frames that fail the anti-spoofing check and frames to or from a
 * context with bandwidth limits still take the bridge.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { Host } from "../../src/host.ts";
import { netctxJson, netctxOk } from "../utils/cli.ts";
import { testConfig } from "../utils/config.ts";
import { type IpLink, ipLink, nftTable, sentDuring } from "../utils/kernel-oracle.ts";
import { contextNetns as ns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";

interface NetworkView {
  shortcut?: { state: string; reason?: string; macs?: string[] };
}

const macOf = (name: string) => ipLink<IpLink>("eth0", ns(name)).address!;

/** 50 pings in a burst; true when all came back. */
const pings = (from: string, to: string, source?: string) =>
  ping(ns(from), to, { count: 50, ...(source ? { source } : {}) });

test("contexts of a bridge network reach each other past the bridge; spoofers and shaped contexts take it; gc drops strays", () => {
  netctxOk(
    "network",
    "create",
    "sc",
    "--driver",
    "bridge",
    "--subnet",
    "10.68.0.0/24",
    "--subnet",
    "fd68::/64",
  );
  netctxOk("create", "sa", "--level", "l2", "--network", "sc", "--ip", "10.68.0.10", "--ip", "fd68::10");
  netctxOk("create", "sb", "--level", "l2", "--network", "sc", "--ip", "10.68.0.11", "--ip", "fd68::11");
  netctxOk(
    "create",
    "sl",
    "--level",
    "l2",
    "--network",
    "sc",
    "--ip",
    "10.68.0.12",
    "--bandwidth",
    "100mbit",
  );

  const view = netctxJson<NetworkView>("network", "inspect", "sc");
  assert.equal(view.shortcut?.state, "on", JSON.stringify(view.shortcut));
  // The shaped context is not in the map: a redirect would skip its tbf and ifb.
  assert.deepEqual(view.shortcut?.macs, [macOf("sa"), macOf("sb")].sort());

  // Neighbour discovery first (ARP/ND go through the bridge), then the burst: v4 and v6, both ways.
  assert.ok(ping(ns("sa"), "10.68.0.11") && ping(ns("sa"), "fd68::11"));
  const short = sentDuring("nc-sb", () => {
    assert.ok(pings("sa", "10.68.0.11"), "v4 sa -> sb");
    assert.ok(pings("sa", "fd68::11"), "v6 sa -> sb");
  });
  assert.ok(short < 10, `nc-sb transmitted ${short} of 100 requests: they went through the bridge`);
  // The replies went short too: sa's veth did not carry them.
  const replies = sentDuring("nc-sa", () => assert.ok(pings("sa", "10.68.0.11")));
  assert.ok(replies < 10, `nc-sa transmitted ${replies} of 50 replies`);

  // To the gateway (the next test shows that it skips the bridge's port).
  assert.ok(pings("sa", "10.68.0.1"), "sa -> gateway");

  // A source the port does not own takes the bridge, where anti-spoofing drops it.
  execFileSync("ip", ["-n", "netctx-sa", "addr", "add", "10.68.0.200/24", "dev", "eth0"]);
  assert.equal(pings("sa", "10.68.0.11", "10.68.0.200"), false, "a spoofed source reached sb");
  execFileSync("ip", ["-n", "netctx-sa", "addr", "del", "10.68.0.200/24", "dev", "eth0"]);

  // A shaped context: traffic to it passes its veth (and its tbf).
  assert.ok(ping(ns("sa"), "10.68.0.12"));
  const shaped = sentDuring("nc-sl", () => assert.ok(pings("sa", "10.68.0.12"), "sa -> sl"));
  assert.ok(shaped >= 50, `nc-sl transmitted only ${shaped} of 50 requests`);

  // rm takes a context out of the map; the others keep going short.
  netctxOk("rm", "sl");
  netctxOk("rm", "sb");
  assert.deepEqual(netctxJson<NetworkView>("network", "inspect", "sc").shortcut?.macs, [macOf("sa")]);
  netctxOk("create", "sc2", "--level", "l2", "--network", "sc", "--ip", "10.68.0.13");
  assert.ok(ping(ns("sa"), "10.68.0.13"));
  const again = sentDuring("nc-sc2", () => assert.ok(pings("sa", "10.68.0.13")));
  assert.ok(again < 10, `nc-sc2 transmitted ${again} of 50 requests`);

  // A context the store forgot without its teardown leaves an entry behind: gc takes it out, and only it.
  const forgotten = macOf("sc2");
  const host = Host.open(testConfig());
  try {
    host.store.transaction(() => {
      host.store.releaseAll("sc2");
      host.store.deleteContext("sc2");
    });
  } finally {
    host.close();
  }
  const plan = JSON.parse(netctxOk("gc", "--dry-run", "--json")) as { actions: { object: string }[] };
  assert.ok(plan.actions.some((a) => a.object === `shortcut entry ${forgotten} of network sc`));
  assert.ok(!plan.actions.some((a) => a.object === `shortcut entry ${macOf("sa")} of network sc`));
  netctxOk("gc");
  assert.deepEqual(netctxJson<NetworkView>("network", "inspect", "sc").shortcut?.macs, [macOf("sa")]);

  netctxOk("rm", "sa");
  netctxOk("network", "rm", "sc");
});

/** Counters of a test-only nft table, by comment: what each probe rule saw. */
function probeCounts(family: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of nftTable(family, "probe")) {
    const rule = (o as { rule?: { comment?: string; expr?: { counter?: { packets: number } }[] } }).rule;
    const counter = rule?.expr?.find((e) => e.counter)?.counter;
    if (rule?.comment && counter) counts[rule.comment] = counter.packets;
  }
  return counts;
}

/** How many packets each probe rule of `family` saw while `traffic` ran. */
function seenDuring(family: string, traffic: () => void): Record<string, number> {
  const before = probeCounts(family);
  traffic();
  const after = probeCounts(family);
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]));
}

test("frames for the gateway enter the bridge past its port, only from a checked sender; beyond the gateway works", () => {
  netctxOk(
    "network",
    "create",
    "gw",
    "--driver",
    "bridge",
    "--subnet",
    "10.69.0.0/24",
    "--subnet",
    "fd69::/64",
  );
  netctxOk("network", "create", "gx", "--driver", "bridge", "--subnet", "10.69.1.0/24");
  netctxOk("create", "ga", "--level", "l2", "--network", "gw", "--ip", "10.69.0.10", "--ip", "fd69::10");
  netctxOk("create", "gb", "--level", "l2", "--network", "gw", "--ip", "10.69.0.11");
  netctxOk("create", "gx1", "--level", "l2", "--network", "gx", "--ip", "10.69.1.10");
  const gateway = ipLink<IpLink>("nc-gw").address!;
  const gbMac = macOf("gb");
  // What the bridge sees of the frames for its own MAC (at bridge prerouting, before anti-spoofing at -300), and
  // what reaches the host's IP stack from the spoofers below (anti-spoofing drops them before br_netfilter would).
  execFileSync("nft", ["-f", "-"], {
    input: `table bridge probe {
  chain pre {
    type filter hook prerouting priority -400; policy accept;
    ether daddr ${gateway} icmp type echo-request counter comment "bridge4"
    ether daddr ${gateway} icmpv6 type echo-request counter comment "bridge6"
  }
}
table inet probe {
  chain pre {
    type filter hook prerouting priority -400; policy accept;
    ip saddr 10.69.0.200 counter comment "spoofed-ip"
    ether saddr ${gbMac} icmp type echo-request counter comment "spoofed-mac"
  }
}
`,
  });
  try {
    // Neighbour discovery for the gateway takes the bridge (ARP, ND); the echo requests after it do not.
    assert.ok(ping(ns("ga"), "10.69.0.1") && ping(ns("ga"), "fd69::1"));
    const short = seenDuring("bridge", () => {
      assert.ok(pings("ga", "10.69.0.1"), "v4 ga -> gateway");
      assert.ok(pings("ga", "fd69::1"), "v6 ga -> gateway");
      // Beyond the gateway: routed by the host into another network, as before.
      assert.ok(pings("ga", "10.69.1.10"), "ga -> gx1 through the gateway");
    });
    const bridged = (short["bridge4"] ?? 0) + (short["bridge6"] ?? 0);
    assert.ok(bridged < 10, `the bridge saw ${bridged} of 150 echo requests for the gateway`);

    // A source address the port does not own takes the bridge, whose anti-spoofing drops it before the host sees it.
    execFileSync("ip", ["-n", "netctx-ga", "addr", "add", "10.69.0.200/24", "dev", "eth0"]);
    const spoofedIp = seenDuring("inet", () => {
      const bridge = seenDuring("bridge", () =>
        assert.equal(pings("ga", "10.69.0.1", "10.69.0.200"), false, "a spoofed source reached the gateway"),
      );
      assert.ok((bridge["bridge4"] ?? 0) >= 50, `the bridge saw ${bridge["bridge4"]} of 50 spoofed requests`);
    });
    assert.equal(spoofedIp["spoofed-ip"], 0, "packets from a spoofed source reached the host's stack");
    execFileSync("ip", ["-n", "netctx-ga", "addr", "del", "10.69.0.200/24", "dev", "eth0"]);

    // Another context's MAC (in the map, but on another port): the same.
    const gaMac = macOf("ga");
    const inGa = (...args: string[]) => execFileSync("ip", ["-n", "netctx-ga", ...args]);
    inGa("link", "set", "eth0", "address", gbMac);
    inGa("neigh", "replace", "10.69.0.1", "lladdr", gateway, "dev", "eth0", "nud", "permanent");
    const spoofedMac = seenDuring("inet", () =>
      assert.equal(pings("ga", "10.69.0.1"), false, "a spoofed MAC reached the gateway"),
    );
    assert.equal(spoofedMac["spoofed-mac"], 0, "frames from a spoofed MAC reached the host's stack");
    // Its own MAC back (which flushes the neighbour table, the permanent entry with it).
    inGa("link", "set", "eth0", "address", gaMac);
    assert.ok(ping(ns("ga"), "10.69.0.1", { tries: 3 }), "ga reaches the gateway again as itself");
  } finally {
    execFileSync("nft", ["-f", "-"], { input: "delete table bridge probe\ndelete table inet probe\n" });
  }
  for (const c of ["ga", "gb", "gx1"]) netctxOk("rm", c);
  netctxOk("network", "rm", "gw");
  netctxOk("network", "rm", "gx");
});
