/**
 * Anti-spoofing on the wire: a context that sends with an address or MAC not its own, or claims another's
 * address in ARP, is dropped at its port by default and gets through on a --no-antispoof network.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { PROBE_PY, pythonPath } from "../../src/audit/probe-script.ts";
import { Firewall, RULE_COUNT } from "../../src/firewall/firewall.ts";
import { netctxOk } from "../utils/cli.ts";
import { type IpLink, ipLink, neighbourMac, nftSet } from "../utils/kernel-oracle.ts";
import { inNetns, contextNetns as ns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";

function inNs(ctx: string, argv: string[]): { ok: boolean; out: string } {
  const inside = inNetns(ns(ctx), argv);
  const r = spawnSync(inside[0]!, inside.slice(1), { encoding: "utf8", timeout: 10_000 });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

function sh(ctx: string, script: string): void {
  const r = inNs(ctx, ["sh", "-c", script]);
  assert.ok(r.ok, r.out);
}

/** Ping retried: a freshly changed MAC or address may need a neighbour round first. */
function pingFrom(ctx: string, dst: string, src?: string): boolean {
  return ping(ns(ctx), dst, { tries: 2, ...(src ? { source: src } : {}) });
}

/** ARP request "who-has GW tell SPA" from the context's own MAC, through a packet socket. */
function claimArp(ctx: string, spa: string, gateway: string): void {
  const mac = ipLink<IpLink>("eth0", ns(ctx)).address!;
  const params = {
    ip: "ip",
    shared: false,
    own4: spa,
    probeDst: gateway,
    routeAdd: "198.51.100.0/30",
    foreign4: spa,
    markerPorts: [],
    foreignDev: { ifname: "lo", dst: "127.0.0.2" },
    spoof: { src: spa, dst: gateway, port: 9, token: "t" },
    l2: { ifname: "eth0", mac, gwMac: "ff:ff:ff:ff:ff:ff", fakeMac: mac, arpSpa: spa },
    reach: [],
  };
  // The probe program's phase 1 sends the ARP claim (among others); stdin EOF ends phase 2 at once.
  const probe = inNetns(ns(ctx), [pythonPath(), "-c", PROBE_PY, "probe", JSON.stringify(params)]);
  const r = spawnSync(probe[0]!, probe.slice(1), { encoding: "utf8", input: "", timeout: 15_000 });
  assert.match(r.stdout, /"arp": \{[^}]*"ok": true/, r.stderr);
}

const hostNeighMac = (ip: string, dev: string) => neighbourMac(ip, { dev });

/** Elements of one of our sets in the table of `family`, as text. */
const setElements = (family: string, set: string) => nftSet(set, family);

test("bridge: spoofed source IP, spoofed MAC and foreign ARP are dropped by default, allowed with --no-antispoof", () => {
  netctxOk(
    "network",
    "create",
    "guarded",
    "--driver",
    "bridge",
    "--subnet",
    "10.71.0.0/24",
    "--subnet",
    "fd71::/64",
  );
  netctxOk("network", "create", "open", "--driver", "bridge", "--subnet", "10.72.0.0/24", "--no-antispoof");
  for (const [c, net, ip] of [
    ["a", "guarded", "10.71.0.10"],
    ["b", "guarded", "10.71.0.11"],
    ["c", "open", "10.72.0.10"],
    ["d", "open", "10.72.0.11"],
  ] as const)
    netctxOk("create", c, "--level", "l2", "--network", net, "--ip", ip);

  // Legitimate traffic, v4 and v6 (ND from link-local and global addresses must pass).
  assert.ok(ping(ns("a"), "10.71.0.11"));
  assert.ok(ping(ns("a"), "fd71::3") || ping(ns("a"), "fd71::2"));
  assert.ok(ping(ns("a"), "10.71.0.1"));
  assert.ok(ping(ns("c"), "10.72.0.11"));

  // A second address inside the context: its packets leave with a source the port does not own.
  sh("a", "ip addr add 10.71.0.200/24 dev eth0");
  sh("c", "ip addr add 10.72.0.200/24 dev eth0");
  assert.equal(
    pingFrom("a", "10.71.0.11", "10.71.0.200"),
    false,
    "spoofed source IP crossed a guarded bridge",
  );
  assert.equal(pingFrom("c", "10.72.0.11", "10.72.0.200"), true, "--no-antispoof must let it through");
  sh("a", "ip addr del 10.71.0.200/24 dev eth0");
  sh("c", "ip addr del 10.72.0.200/24 dev eth0");
  assert.ok(pingFrom("a", "10.71.0.11"), "legit traffic after the probe");

  // ARP claiming an address the context does not hold.
  claimArp("a", "10.71.0.250", "10.71.0.1");
  claimArp("c", "10.72.0.250", "10.72.0.1");
  assert.equal(hostNeighMac("10.71.0.250", "nc-guarded"), undefined, "the host learned a forged ARP sender");
  assert.ok(hostNeighMac("10.72.0.250", "nc-open"), "--no-antispoof: the host learns the claim");

  // A changed MAC.
  sh("a", "ip link set eth0 address 02:aa:00:00:00:01");
  sh("c", "ip link set eth0 address 02:aa:00:00:00:02");
  assert.equal(pingFrom("a", "10.71.0.11"), false, "spoofed MAC crossed a guarded bridge");
  assert.equal(pingFrom("c", "10.72.0.11"), true);

  // Elements exist per port and go with rm; the open network's ports never had any.
  const ports = () => setElements("bridge", "as_ports").join(" ");
  assert.match(ports(), /nc-a/);
  assert.match(ports(), /nc-b/);
  assert.doesNotMatch(ports(), /nc-c|nc-d/);
  netctxOk("rm", "a");
  assert.doesNotMatch(ports(), /nc-a/);
  for (const set of ["as_mac", "as_ip4", "as_ip6", "as_nd"])
    assert.doesNotMatch(setElements("bridge", set).join(" "), /nc-a/, set);
  assert.match(ports(), /nc-b/);
  // Firewall's own health check still sees its fixed rules only.
  assert.equal(new Firewall().ruleCount(), RULE_COUNT);
  netctxOk("rm", "b", "c", "d");
  assert.deepEqual(setElements("bridge", "as_ports"), []);
});

test("routed: spoofing is dropped on the host-side veth (inet + arp tables), legit v4/v6 works, rm cleans up", () => {
  netctxOk(
    "network",
    "create",
    "rt",
    "--driver",
    "routed",
    "--subnet",
    "10.73.0.0/24",
    "--subnet",
    "fd73::/64",
  );
  netctxOk("network", "create", "rto", "--driver", "routed", "--subnet", "10.74.0.0/24", "--no-antispoof");
  netctxOk("create", "r1", "--level", "l2", "--network", "rt", "--ip", "10.73.0.10", "--ip", "fd73::10");
  netctxOk("create", "r2", "--level", "l2", "--network", "rt", "--ip", "10.73.0.11", "--ip", "fd73::11");
  netctxOk("create", "o1", "--level", "l2", "--network", "rto", "--ip", "10.74.0.10");
  assert.ok(ping(ns("r1"), "10.73.0.11"));
  assert.ok(ping(ns("r1"), "fd73::11"));

  // A spoofed source inside the routed prefix: the host would route the reply to r2, so look at the host.
  sh("r1", "ip addr add 10.73.0.99/32 dev eth0");
  sh("o1", "ip addr add 10.74.0.99/32 dev eth0");
  assert.equal(pingFrom("r1", "10.73.0.1", "10.73.0.99"), false);
  claimArp("r1", "10.73.0.250", "10.73.0.1");
  claimArp("o1", "10.74.0.250", "10.74.0.1");
  assert.equal(hostNeighMac("10.73.0.250", "nc-r1"), undefined);
  assert.ok(hostNeighMac("10.74.0.250", "nc-o1"));
  sh("r1", "ip link set eth0 address 02:aa:00:00:00:03");
  assert.equal(pingFrom("r1", "10.73.0.11"), false, "spoofed MAC through a guarded routed veth");

  assert.match(setElements("inet", "as_ports").join(" "), /nc-r1/);
  assert.match(setElements("arp", "as_ip4").join(" "), /nc-r1/);
  netctxOk("rm", "r1");
  for (const [family, set] of [
    ["inet", "as_ports"],
    ["inet", "as_ip4"],
    ["inet", "as_ip6"],
    ["inet", "as_mac"],
    ["arp", "as_ip4"],
  ] as const)
    assert.doesNotMatch(setElements(family, set).join(" "), /nc-r1/, `${family} ${set}`);
  assert.equal(new Firewall().ruleCount(), RULE_COUNT);
  netctxOk("rm", "r2", "o1");
  new Firewall().removeAll();
  const tables = spawnSync("nft", ["list", "tables"], { encoding: "utf8" }).stdout;
  assert.doesNotMatch(tables, /netctx/);
});
