/**
 * `network connect` / `network disconnect` (issue 17): a running l2 context joins one more network and leaves it,
 * checked on the wire, in the kernel, in the leases and by gc; every refusal and a failure half-way leave state and
 * kernel as they were.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { netctx, netctxJson, netctxOk, startEngine } from "../utils/cli.ts";
import { ipj, kernelSnapshot, nftSet, routes } from "../utils/kernel-oracle.ts";
import { addVethNetns, delVethNetns, inNetns, netnsPath, contextNetns as ns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";
import { must } from "../utils/shell.ts";
import { storeState } from "../utils/state-oracle.ts";
import { waitFor } from "../utils/wait.ts";

interface View {
  name: string;
  networks: string[];
  addresses: string[];
  status: string;
  interfaces: { name: string; network: string; hostIfname?: string; addresses: string[]; mac?: string }[];
}

interface NetView {
  contexts: string[];
  leases: { owner: string; address: string }[];
}

const bare = (cidr: string) => cidr.split("/")[0]!;
const linkNames = (ctx: string) => ipj<{ ifname: string }>(["link"], ns(ctx)).map((l) => l.ifname);
const noGcActions = () => netctxJson<{ actions: unknown[] }>("gc", "--dry-run").actions;

/** What netctx could have touched (the store's records read through the library), the contexts' own namespaces included. */
function everything(contexts: string[]): string {
  const inside = contexts.map((c) => [
    ipj(["link"], ns(c)).map((l) => [l["ifname"], l["address"], l["mtu"], l["operstate"]]),
    ipj(["addr"], ns(c)).map((a) => [a["ifname"], a["addr_info"]]),
    routes(4, ns(c)),
    routes(6, ns(c)),
  ]);
  return JSON.stringify([storeState(), kernelSnapshot(), inside]);
}

/** Run in the netns at path `netns`; insists on success. */
function inside(netns: string, argv: string[]): string {
  return must(inNetns(netns, argv));
}

/** Packets with source `src` that reached `ctx`'s stack (an nft counter at its prerouting, before any reply). */
function arrivedFrom(ctx: string, src: string, send: () => void): number {
  const table = `probe${Math.random().toString(36).slice(2, 8)}`;
  inside(ns(ctx), ["nft", "add", "table", "ip", table]);
  try {
    inside(ns(ctx), ["nft", "add chain ip", table, "c { type filter hook prerouting priority -400; }"]);
    inside(ns(ctx), ["nft", "add", "rule", "ip", table, "c", "ip", "saddr", src, "counter"]);
    send();
    const out = inside(ns(ctx), ["nft", "-j", "list", "table", "ip", table]);
    const rule = (JSON.parse(out) as { nftables: Record<string, unknown>[] }).nftables.find(
      (o) => "rule" in o,
    );
    const expr =
      (rule?.["rule"] as { expr?: Record<string, { packets?: number }>[] } | undefined)?.expr ?? [];
    return expr.find((e) => "counter" in e)?.["counter"]?.packets ?? -1;
  } finally {
    inside(ns(ctx), ["nft", "delete", "table", "ip", table]);
  }
}

/** ICMP echo from `ctx` with source `src` to `dst`, whatever comes back. */
function sendPings(ctx: string, src: string, dst: string): void {
  const argv = inNetns(ns(ctx), ["ping", "-n", "-q", "-c", "3", "-i", "0.05", "-W", "1", "-I", src, dst]);
  spawnSync(argv[0]!, argv.slice(1), { stdio: "ignore", timeout: 10_000 });
}

test("connect: a running l2 context joins a second bridge network, reaches its gateway and members, guarded; disconnect takes it all back", () => {
  // a's first network is internal: without the new one it reaches no other network, nor the host's other addresses.
  netctxOk("network", "create", "inner", "--driver", "bridge", "--internal", "--subnet", "10.81.0.0/24");
  netctxOk(
    "network",
    "create",
    "second",
    "--driver",
    "bridge",
    "--subnet",
    "10.82.0.0/24",
    "--subnet",
    "fd82::/64",
  );
  netctxOk("create", "a", "--level", "l2", "--network", "inner");
  netctxOk("create", "b", "--level", "l2", "--network", "second", "--ip", "10.82.0.20", "--ip", "fd82::20");
  for (const dst of ["10.82.0.1", "10.82.0.20"])
    assert.equal(ping(ns("a"), dst), false, `a -> ${dst} before`);

  const view = netctxJson<View>("network", "connect", "second", "a", "--ip", "10.82.0.30");
  assert.deepEqual(view.networks, ["inner", "second"]);
  const eth1 = view.interfaces.find((i) => i.network === "second")!;
  assert.equal(eth1.name, "eth1", "the next name of the context's series");
  assert.equal(eth1.hostIfname, "nc-a.1");
  assert.ok(eth1.addresses.includes("10.82.0.30/24"), JSON.stringify(eth1));
  const own6 = bare(eth1.addresses.find((x) => x.includes(":"))!);
  assert.ok(linkNames("a").includes("eth1"));
  assert.equal(
    routes(4, ns("a")).find((r) => r.dst === "default")?.gateway,
    "10.82.0.1",
    "the first default route: the internal network gave none",
  );
  for (const dst of ["10.82.0.1", "10.82.0.20", "fd82::1", "fd82::20"])
    assert.ok(ping(ns("a"), dst, { tries: 3 }), `a -> ${dst} after connect`);
  assert.ok(ping(ns("b"), "10.82.0.30"), "b -> a's new address");
  const leases = () => netctxJson<NetView>("network", "inspect", "second");
  assert.deepEqual(
    leases()
      .leases.filter((l) => l.owner === "a")
      .map((l) => l.address)
      .sort(),
    ["10.82.0.30", own6].sort(),
  );
  assert.deepEqual(leases().contexts.sort(), ["a", "b"]);
  assert.equal(netctxJson<View>("inspect", "a").status, "ready");
  assert.deepEqual(noGcActions(), [], "gc sees the new attachment as declared");

  // Anti-spoofing on the new port, its IPv4 source rule alone: a knows b's MAC (no ARP, whose guard would stop the
  // ping first), sends from a second address, and b's stack counts what arrives.
  const bMac = ipj<{ ifname: string; address: string }>(["link"], ns("b")).find(
    (l) => l.ifname === "eth0",
  )!.address;
  inside(ns("a"), [
    "ip",
    "neigh",
    "replace",
    "10.82.0.20",
    "lladdr",
    bMac,
    "dev",
    "eth1",
    "nud",
    "permanent",
  ]);
  inside(ns("a"), ["ip", "addr", "add", "10.82.0.200/32", "dev", "eth1"]);
  const spoofed = arrivedFrom("b", "10.82.0.200", () => sendPings("a", "10.82.0.200", "10.82.0.20"));
  const genuine = arrivedFrom("b", "10.82.0.30", () => sendPings("a", "10.82.0.30", "10.82.0.20"));
  inside(ns("a"), ["ip", "addr", "del", "10.82.0.200/32", "dev", "eth1"]);
  inside(ns("a"), ["ip", "neigh", "del", "10.82.0.20", "dev", "eth1"]);
  assert.ok(genuine > 0, `the probe works: a's own source arrives (${genuine})`);
  assert.equal(spoofed, 0, "a spoofed source from the connected port reached the bridge's other member");
  assert.match(nftSet("as_ports", "bridge").join(" "), /nc-a\.1/);

  netctxOk("network", "disconnect", "second", "a");
  assert.ok(!linkNames("a").includes("eth1"), "eth1 is gone");
  assert.deepEqual(
    leases().leases.filter((l) => l.owner === "a"),
    [],
  );
  assert.deepEqual(leases().contexts, ["b"]);
  for (const dst of ["10.82.0.1", "10.82.0.20"]) assert.equal(ping(ns("a"), dst), false, `a -> ${dst} after`);
  assert.ok(ping(ns("a"), "10.81.0.1"), "a keeps its first network");
  for (const set of ["as_ports", "as_mac", "as_ip4", "as_ip6"])
    assert.doesNotMatch(nftSet(set, "bridge").join(" "), /nc-a\.1/, set);
  assert.deepEqual(noGcActions(), []);
  netctxOk("rm", "a", "b");
  netctxOk("network", "rm", "inner", "second");
});

test("connect keeps the context's default route; disconnecting the network that held it puts one back through the other", () => {
  netctxOk("network", "create", "first", "--driver", "bridge", "--subnet", "10.83.0.0/24");
  netctxOk("network", "create", "other", "--driver", "routed", "--subnet", "10.84.0.0/24");
  netctxOk("create", "c", "--level", "l2", "--network", "first", "--ifname", "net0");
  netctxOk("create", "peer", "--level", "l2", "--network", "other", "--ip", "10.84.0.20");
  const view = netctxJson<View>("network", "connect", "other", "c");
  assert.equal(view.interfaces[1]?.name, "net1", "the series the context's interfaces follow");
  const defaults = () => routes(4, ns("c")).filter((r) => r.dst === "default");
  assert.deepEqual(
    defaults().map((r) => `${r.gateway} ${r.dev}`),
    ["10.83.0.1 net0"],
    "no second default route",
  );
  const cRouted = bare(view.interfaces[1]!.addresses[0]!);
  assert.ok(
    routes(4).some((r) => r.dst === cRouted && r.dev === "nc-c.1"),
    "the host's route to c's routed address",
  );
  // While net0 holds c's default route, its replies to the routed network leave by net0 (a routed network gives
  // its contexts no subnet route, at create as here), where anti-spoofing drops the foreign source: so peer reaches
  // c only once the default route goes through net1, below.
  assert.deepEqual(noGcActions(), []);

  netctxOk("network", "disconnect", "first", "c");
  assert.deepEqual(
    defaults().map((r) => `${r.gateway} ${r.dev}`),
    ["10.84.0.1 net1"],
  );
  assert.deepEqual(linkNames("c").sort(), ["lo", "net1"]);
  assert.ok(ping(ns("c"), "10.84.0.20"), "c -> peer through the routed network");
  assert.ok(ping(ns("peer"), cRouted), "peer -> c");
  assert.ok(ping(ns("c"), "10.83.0.1"), "the host's other address, through the default route that is left");
  assert.deepEqual(noGcActions(), []);
  netctxOk("rm", "c", "peer");
  netctxOk("network", "rm", "first", "other");
});

test("every refusal of connect and disconnect changes nothing", () => {
  netctxOk("network", "create", "r1", "--driver", "bridge", "--subnet", "10.86.0.0/24");
  netctxOk("network", "create", "r2", "--driver", "bridge", "--subnet", "10.87.0.0/24");
  netctxOk("network", "create", "hn", "--driver", "host", "--subnet", "10.88.0.0/24");
  netctxOk("create", "x", "--level", "l2", "--network", "r1");
  netctxOk("create", "y", "--level", "l2", "--network", "r2", "--ip", "10.87.0.9");
  netctxOk("create", "l3c", "--level", "l3", "--network", "hn");
  netctxOk("create", "sc", "--level", "socket", "--network", "hn");
  const cases: [string[], RegExp][] = [
    [["connect", "r2", "l3c"], /level l3, which shares the host's devices/],
    [["connect", "r2", "sc"], /level socket, which shares the host's devices/],
    [["disconnect", "hn", "l3c"], /shares the host's devices/],
    [["connect", "r2", "nosuch"], /context "nosuch" does not exist/],
    [["connect", "nosuch", "x"], /network "nosuch" does not exist/],
    [["connect", "hn", "x"], /driver host\) does not serve level l2/],
    [["connect", "r1", "x"], /already on network "r1"/],
    [["connect", "r2", "x", "--ip", "10.99.0.5"], /outside the subnets of network "r2"/],
    [["connect", "r2", "x", "--ip", "10.87.0.9"], /10\.87\.0\.9/],
    [["connect", "r2", "x", "--ip", "bogus"], /ip/],
    [["disconnect", "r2", "x"], /not on network "r2"/],
    [["disconnect", "nosuch", "x"], /network "nosuch" does not exist/],
    [["disconnect", "r1", "x"], /last network of context "x"/],
    [["disconnect", "r1", "nosuch"], /context "nosuch" does not exist/],
  ];
  for (const [args, why] of cases) {
    const before = everything(["x", "y"]);
    const r = netctx("network", ...args);
    assert.notEqual(r.code, 0, `${args.join(" ")} was refused`);
    assert.match(r.stderr, why, args.join(" "));
    assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
    assert.equal(everything(["x", "y"]), before, `${args.join(" ")} changed nothing`);
  }
  netctxOk("rm", "x", "y", "l3c", "sc");
  netctxOk("network", "rm", "r1", "r2", "hn");
});

test("a connect that fails half-way undoes its link, firewall elements, lease and record", () => {
  netctxOk("network", "create", "base", "--driver", "bridge", "--subnet", "10.89.0.0/24");
  netctxOk("network", "create", "rt", "--driver", "routed", "--subnet", "10.90.0.0/24");
  netctxOk("create", "d", "--level", "l2", "--network", "base");
  // Somebody's route to the address d asks for: the routed driver's host route fails after the veth, its guard and
  // its firewall registration are made.
  must(["ip", "route", "add", "10.90.0.50/32", "dev", "lo"]);
  try {
    const before = everything(["d"]);
    const r = netctx("network", "connect", "rt", "d", "--ip", "10.90.0.50");
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, /EEXIST|exists/i);
    assert.equal(everything(["d"]), before, "all undone");
    assert.deepEqual(nftSet("as_ports").join(" ").includes("nc-d.1"), false);
    assert.deepEqual(noGcActions(), []);
  } finally {
    must(["ip", "route", "del", "10.90.0.50/32", "dev", "lo"]);
  }
  // And the same connect succeeds once the address is free.
  netctxOk("network", "connect", "rt", "d", "--ip", "10.90.0.50");
  assert.ok(ping(ns("d"), "10.90.0.1"));
  netctxOk("rm", "d");
  netctxOk("network", "rm", "base", "rt");
});

test("connect and disconnect go through the resident engine when it runs", async () => {
  netctxOk("network", "create", "e1", "--driver", "bridge", "--subnet", "10.91.0.0/24");
  netctxOk("network", "create", "e2", "--driver", "bridge", "--subnet", "10.92.0.0/24");
  const engine = await startEngine();
  try {
    netctxOk("create", "e", "--level", "l2", "--network", "e1");
    const view = netctxJson<View>("network", "connect", "e2", "e");
    assert.deepEqual(view.networks, ["e1", "e2"]);
    assert.ok(ping(ns("e"), "10.92.0.1"));
    const refused = netctx("network", "disconnect", "e1", "nosuch");
    assert.match(refused.stderr, /context "nosuch" does not exist/);
    netctxOk("network", "disconnect", "e2", "e");
    assert.deepEqual(linkNames("e"), ["lo", "eth0"]);
    // The engine's log arrives through this test's event loop.
    await waitFor(() => /networks\/e2\/disconnect/.test(engine.log()));
    assert.match(engine.log(), /POST \/v1\/networks\/e2\/connect -> 200/);
    assert.match(engine.log(), /POST \/v1\/networks\/e2\/disconnect -> 200/);
    netctxOk("rm", "e");
  } finally {
    await engine.stop();
  }
  assert.deepEqual(noGcActions(), []);
  netctxOk("network", "rm", "e1", "e2");
});

test("macvlan: connect puts a macvlan inside the context onto the parent's segment; disconnect takes it out", () => {
  const outside = { name: "seg-router", hostIfname: "seg0" };
  addVethNetns({ ...outside, addresses: ["10.95.0.254/24"] });
  try {
    netctxOk("network", "create", "home", "--driver", "bridge", "--subnet", "10.96.0.0/24");
    netctxOk(
      "network",
      "create",
      "seg",
      "--driver",
      "macvlan",
      "--parent",
      outside.hostIfname,
      "--subnet",
      "10.95.0.0/24",
      "--gateway",
      "10.95.0.254",
    );
    netctxOk("create", "m", "--level", "l2", "--network", "home");
    const view = netctxJson<View>("network", "connect", "seg", "m");
    const kind = ipj<{ ifname: string; linkinfo?: { info_kind?: string } }>(["-d", "link"], ns("m")).find(
      (l) => l.ifname === "eth1",
    )?.linkinfo?.info_kind;
    assert.equal(kind, "macvlan");
    assert.ok(ping(ns("m"), "10.95.0.254", { tries: 3 }), "m -> the segment's router");
    const own = bare(view.interfaces[1]!.addresses[0]!);
    assert.ok(ping(netnsPath(outside.name), own), "the segment's router -> m");
    assert.deepEqual(noGcActions(), []);
    netctxOk("network", "disconnect", "seg", "m");
    assert.deepEqual(linkNames("m"), ["lo", "eth0"]);
    assert.equal(ping(netnsPath(outside.name), own), false);
    assert.deepEqual(netctxJson<NetView>("network", "inspect", "seg").leases, []);
    netctxOk("rm", "m");
    netctxOk("network", "rm", "home", "seg");
  } finally {
    delVethNetns(outside);
  }
});

test("published ports and bandwidth limits follow the context when the network that carried them leaves", () => {
  netctxOk("network", "create", "p1", "--driver", "bridge", "--subnet", "10.97.0.0/24", "--nat");
  netctxOk("network", "create", "p2", "--driver", "bridge", "--subnet", "10.98.0.0/24", "--nat");
  netctxOk(
    "create",
    "w",
    "--level",
    "l2",
    "--network",
    "p1",
    "--publish",
    "8090:80",
    "--bandwidth",
    "10mbit",
  );
  netctxOk("network", "connect", "p2", "w", "--ip", "10.98.0.40");
  assert.deepEqual(noGcActions(), []);
  netctxOk("network", "disconnect", "p1", "w");
  const view = netctxJson<{ bandwidth?: { live?: { ingress?: { rate: number } } } }>("inspect", "w");
  assert.equal(view.bandwidth?.live?.ingress?.rate, 10_000_000, "the limits sit on the new first veth");
  const published = ipjNft().filter((e) => e.includes("8090"));
  assert.ok(
    published.some((e) => e.includes("10.98.0.40")),
    `the port now leads to the address left: ${published}`,
  );
  assert.deepEqual(noGcActions(), [], "gc agrees with where they went");
  netctxOk("rm", "w");
  netctxOk("network", "rm", "p1", "p2");
});

/** Our inet table as text, one line per rule or element, for a look at where published ports lead. */
function ipjNft(): string[] {
  return must(["nft", "list", "table", "inet", "netctx"]).split("\n");
}
