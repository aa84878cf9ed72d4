/**
 * The bridge shortcut (networks/bridge-shortcut.ts): between contexts of one bridge network, unicast frames go from
 * one context's port straight into the other context (bpf_redirect_peer), so the receiver's host-side veth never
 * transmits them: its tx counter is the proof on the wire. Frames that fail the anti-spoofing check, frames to the
 * gateway and frames to or from a context with bandwidth limits still take the bridge.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { Host } from "../../src/host.ts";
import { netctxJson, netctxOk } from "../utils/cli.ts";
import { testConfig } from "../utils/config.ts";
import { type IpLink, ipLink, sentDuring } from "../utils/kernel-oracle.ts";
import { contextNetns as ns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";

interface NetworkView {
  shortcut?: { state: string; reason?: string; macs?: string[] };
}

const macOf = (name: string) => ipLink<IpLink>("eth0", ns(name)).address!;

/** 50 pings in a burst; true when all came back. */
const pings = (from: string, to: string, source?: string) =>
  ping(ns(from), to, { count: 50, ...(source ? { source } : {}) });

test("contexts of a bridge network reach each other past the bridge; the gateway, spoofers and shaped contexts take it; gc drops strays", () => {
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

  // To the gateway: the bridge, as before.
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
