/**
 * Bridge segments: past NETCTX_BRIDGE_SEGMENT_PORTS contexts a bridge network puts new contexts on segment bridges
 * joined to its own by trunk veths. Made small here (3 ports, trunks included) so a handful of contexts spans three
 * bridges.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { netctxJson, netctxOk } from "../helpers/cli.ts";
import { links, ping } from "../helpers/kernel.ts";

process.env["NETCTX_BRIDGE_SEGMENT_PORTS"] = "3";

interface Inspect {
  addresses: string[];
  netns: string;
}

const masterOf = (ifname: string) => links().find((l) => l.ifname === ifname)?.master;
const addressOf = (name: string) => netctxJson<Inspect>("inspect", name).addresses[0]!.split("/")[0]!;
const netns = (name: string) => `/run/netns/netctx-${name}`;

test("contexts past a bridge's share go on segments, reach everyone, and leave nothing behind", () => {
  netctxOk("network", "create", "big", "--driver", "bridge", "--subnet", "10.66.0.0/24", "--nat");
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
