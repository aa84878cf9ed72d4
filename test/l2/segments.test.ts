/**
 * Bridge segments: past NETCTX_BRIDGE_SEGMENT_PORTS contexts a bridge network puts new contexts on segment bridges
 * joined to its own by trunk veths. Made small here (3 ports, trunks included) so a handful of contexts spans three
 * bridges.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { netctxJson, netctxOk } from "../utils/cli.ts";
import { links } from "../utils/kernel-oracle.ts";
import { contextNetns as netns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";

process.env["NETCTX_BRIDGE_SEGMENT_PORTS"] = "3";

interface Inspect {
  addresses: string[];
  netns: string;
}

const masterOf = (ifname: string) => links().find((l) => l.ifname === ifname)?.master;
const addressOf = (name: string, family: 4 | 6 = 4) =>
  netctxJson<Inspect>("inspect", name)
    .addresses.map((a) => a.split("/")[0]!)
    .find((a) => a.includes(":") === (family === 6))!;
/** MLD reports the kernel's IPv6 sent from a device (its per-device SNMP counters). */
const mldReportsSent = (ifname: string) =>
  Number(/^Icmp6OutMLDv2Reports\s+(\d+)$/m.exec(readFileSync(`/proc/net/dev_snmp6/${ifname}`, "utf8"))?.[1]);

test("contexts past a bridge's share go on segments, reach everyone, and leave nothing behind", () => {
  netctxOk(
    "network",
    "create",
    "big",
    "--driver",
    "bridge",
    "--subnet",
    "10.66.0.0/24",
    "--subnet",
    "fd66::/64",
    "--nat",
  );
  for (const name of ["s1", "s2", "s3", "s4", "s5", "s6"])
    netctxOk("create", name, "--level", "l2", "--network", "big");

  for (const name of ["nc-s1", "nc-s2", "nc-s3"]) assert.equal(masterOf(name), "nc-big", name);
  const seg1 = masterOf("nc-s4")!;
  assert.match(seg1, /^nc-[0-9a-f]{6}\.b1$/);
  assert.equal(masterOf("nc-s5"), seg1);
  const seg2 = masterOf("nc-s6")!;
  assert.match(seg2, /^nc-[0-9a-f]{6}\.b2$/);
  // Each segment hangs off the network's bridge by a trunk (which takes one of the segment's ports).
  const prefix = seg1.slice(0, -2);
  assert.equal(masterOf(`${prefix}t1`), "nc-big");
  assert.equal(masterOf(`${prefix}u1`), seg1);

  // Across segments, to the gateway, and within a segment.
  assert.ok(ping(netns("s1"), addressOf("s6")), "s1 (network bridge) -> s6 (segment 2)");
  assert.ok(ping(netns("s6"), addressOf("s4")), "s6 (segment 2) -> s4 (segment 1)");
  assert.ok(ping(netns("s5"), "10.66.0.1"), "s5 (segment 1) -> gateway");
  assert.ok(ping(netns("s4"), addressOf("s5")), "s4 -> s5 (same segment)");
  assert.ok(ping(netns("s1"), addressOf("s6", 6)), "IPv6: s1 (network bridge) -> s6 (segment 2)");
  assert.ok(ping(netns("s6"), addressOf("s4", 6)), "IPv6: s6 (segment 2) -> s4 (segment 1)");
  assert.ok(ping(netns("s5"), "fd66::1"), "IPv6: s5 (segment 1) -> gateway");

  // Segments and trunks have no IPv6 of their own, so they send no MLD reports to be flooded across the bridges;
  // the network's bridge (the gateway, a router) does.
  for (const dev of [seg1, seg2, `${prefix}t1`, `${prefix}u1`, `${prefix}t2`, `${prefix}u2`])
    assert.equal(mldReportsSent(dev), 0, dev);
  assert.ok(mldReportsSent("nc-big") > 0, "the network's bridge");

  // A freed place is taken again before a new segment is made; gc leaves segments of a live network alone.
  netctxOk("rm", "s4");
  netctxOk("create", "s7", "--level", "l2", "--network", "big");
  assert.equal(masterOf("nc-s7"), seg1);
  const gc = JSON.parse(netctxOk("gc", "--dry-run", "--json")) as { actions: { target: string }[] };
  assert.deepEqual(
    gc.actions.filter((a) => a.target.includes(prefix)),
    [],
  );

  for (const name of ["s1", "s2", "s3", "s5", "s6", "s7"]) netctxOk("rm", name);
  netctxOk("network", "rm", "big");
  assert.deepEqual(
    links()
      .map((l) => l.ifname)
      .filter((n) => n.startsWith(prefix) || n === "nc-big"),
    [],
  );
});
