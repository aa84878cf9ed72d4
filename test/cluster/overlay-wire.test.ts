/**
 * Overlay networks on the wire (issue 18): etcd's state (engine/overlay.ts) driving the kernel data path
 * (networks/overlay-peers.ts) in three test hosts with a 3-member etcd (test/utils/cluster.ts), and a fourth host on
 * the underlay that is no member. Contexts of every level on one overlay network reach each other across hosts; each
 * host holds per peer one route per block, one neighbour per block and one FDB entry, whatever the number of remote
 * contexts; a host whose engine dies leaves its peers' kernels within TTL + 2 s and comes back when restarted;
 * --nat masquerades only what leaves the overlay, --internal keeps it in; forged VXLAN reaches nobody; CNI ADD and
 * DEL work across hosts; and gc finds nothing to do on any host.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, test } from "node:test";
import type { CliResult } from "../utils/cli.ts";
import {
  startCluster,
  stopCluster,
  type TestCluster,
  type TestHost,
  UNDERLAY_BRIDGE,
} from "../utils/cluster.ts";
import type { Json } from "../utils/kernel-oracle.ts";
import {
  createContext,
  createOverlay,
  type Made,
  ok,
  pingFrom,
  run,
  serveIn as serveInContext,
  tcpFrom,
  until,
} from "../utils/overlay-cli.ts";
import { sh } from "../utils/shell.ts";
import { probeArgv, startProbe } from "../utils/socket-probe.ts";
import { FORGED_PORT, forgeVxlanArgv } from "../utils/vxlan-forge.ts";
import { sleep } from "../utils/wait.ts";

const TTL = 3;
const MEMBERS = [1, 2, 3];
let c: TestCluster;

before(async () => {
  c = await startCluster({ hosts: 4, etcdHosts: MEMBERS });
  await Promise.all(MEMBERS.map((i) => c.host(i).startEngine("--node-ttl", String(TTL))));
});
after(() => stopCluster());

async function createNetwork(name: string, ...args: string[]): Promise<void> {
  await createOverlay(
    c.host(1),
    MEMBERS.map((i) => c.host(i)),
    name,
    ...args,
  );
}

/** A TCP server in context m, ended with the cluster. */
async function serveIn(m: Made, port: number) {
  const p = await serveInContext(m, port);
  c.adopt(p.child);
  return p;
}

const ipj = (h: TestHost, args: string[]): Json[] => JSON.parse(run(h, ["ip", "-j", ...args]) || "[]");

/** What h's kernel holds for overlay network `net`: our routes, permanent neighbours and FDB entries on nv-NET. */
function kernelOf(h: TestHost, net: string): { routes: string[]; neigh: string[]; fdb: string[] } {
  const dev = `nv-${net}`;
  const routes = [
    ...ipj(h, ["-4", "route", "show", "dev", dev]),
    ...ipj(h, ["-6", "route", "show", "dev", dev]),
  ]
    .filter((r) => String(r.protocol) === "110")
    .map((r) => `${r.dst} via ${r.gateway}`);
  const neigh = ipj(h, ["neigh", "show", "dev", dev])
    .filter((n) => (n.state as string[]).includes("PERMANENT"))
    .map((n) => `${n.dst} ${n.lladdr}`);
  const fdb = (JSON.parse(run(h, ["bridge", "-j", "fdb", "show", "dev", dev]) || "[]") as Json[])
    .filter((f) => f.dst !== undefined)
    .map((f) => `${f.mac} ${f.dst}`);
  return { routes: routes.sort(), neigh: neigh.sort(), fdb: fdb.sort() };
}

const ctx: Record<string, Made> = {};

test("contexts of every level on one overlay network reach each other across hosts, IPv4 and IPv6, ping and TCP", async () => {
  await createNetwork("ov", "--subnet", "10.60.0.0/16", "--subnet", "fd60::/48");
  const [a1, a2, a3, s1, t2] = await Promise.all([
    createContext(c.host(1), "a1", "l2", "ov"),
    createContext(c.host(2), "a2", "l2", "ov"),
    createContext(c.host(3), "a3", "l2", "ov"),
    createContext(c.host(1), "s1", "socket", "ov"),
    createContext(c.host(2), "t2", "l3", "ov"),
  ]);
  Object.assign(ctx, { a1, a2, a3, s1, t2 });
  // Each host routes both blocks (v4, v6) of each of its two peers.
  for (const i of MEMBERS)
    await until(`h${i} programs its peers`, () => kernelOf(c.host(i), "ov").routes.length === 4, 8000);
  // ping from the l2 contexts, to every level (the shared-stack levels may open no raw socket: TCP covers them).
  for (const [from, to] of [
    [a1!, a2!],
    [a1!, a3!],
    [a2!, a3!],
    [a3!, a1!],
    [a1!, t2!],
    [a2!, s1!],
  ] as const) {
    assert.ok(await pingFrom(from, to.v4), `${from.name} -> ${to.name} ${to.v4}`);
    assert.ok(await pingFrom(from, to.v6!), `${from.name} -> ${to.name} ${to.v6}`);
  }
  const servers = [await serveIn(a3!, 7000), await serveIn(t2!, 7000)];
  for (const from of [a1!, s1!, t2!, a2!])
    for (const to of [a3!, t2!]) {
      if (from === to) continue;
      for (const address of [to.v4, to.v6!]) {
        const r = await tcpFrom(from, address, 7000);
        assert.ok(r.ok, `${from.name} -> ${to.name} [${address}]:7000: ${JSON.stringify(r)}`);
        assert.equal(r.data?.trim(), address.includes(":") ? from.v6 : from.v4, `${from.name} -> ${address}`);
      }
    }
  for (const s of servers) await s.stop();
});

test("kernel state grows with hosts, not contexts: per peer one route and one neighbour per block, one FDB entry", async () => {
  const h1 = c.host(1);
  const before = kernelOf(h1, "ov");
  assert.equal(before.routes.length, 4, JSON.stringify(before));
  assert.equal(before.neigh.length, 4, JSON.stringify(before));
  assert.equal(before.fdb.length, 2, JSON.stringify(before));
  // The FDB entries lead to the peers' underlay addresses.
  assert.deepEqual(before.fdb.map((f) => f.split(" ")[1]).sort(), [c.host(2).address4, c.host(3).address4]);
  const more = await Promise.all([1, 2, 3, 4, 5].map((i) => createContext(c.host(2), `m${i}`, "l2", "ov")));
  assert.ok(await pingFrom(ctx.a1!, more[4]!.v4));
  await sleep(500);
  assert.deepEqual(kernelOf(h1, "ov"), before);
});

test("kill -9 of an engine: its peers drop it within TTL + 2 s and keep talking; restarted, it converges", async () => {
  const [h1, h2, h3] = [c.host(1), c.host(2), c.host(3)];
  const gone = (h: TestHost) => {
    const k = kernelOf(h, "ov");
    return (
      k.routes.length === 2 && k.neigh.length === 2 && k.fdb.length === 1 && !k.fdb[0]!.includes(h3.address4)
    );
  };
  const killed = Date.now();
  await h3.engine!.kill9();
  await until("h1 and h2 drop h3", () => gone(h1) && gone(h2), (TTL + 2) * 1000);
  const took = Date.now() - killed;
  assert.ok(took <= (TTL + 2) * 1000, `${took} ms`);
  assert.ok(await pingFrom(ctx.a1!, ctx.a2!.v4), "h1 -> h2 after h3 left");
  assert.ok(await pingFrom(ctx.a2!, ctx.a1!.v6!), "h2 -> h1 after h3 left");
  await h3.startEngine("--node-ttl", String(TTL));
  for (const h of [h1, h2])
    await until(`${h.name} has h3 again`, () => kernelOf(h, "ov").routes.length === 4, 8000);
  assert.ok(await pingFrom(ctx.a1!, ctx.a3!.v4), "h1 -> h3 after its restart");
  assert.ok(await pingFrom(ctx.a3!, ctx.a2!.v6!), "h3 -> h2 after its restart");
});

const OUTSIDE = "192.168.77.200";

/** An "outside" netns on the underlay segment (the hosts' uplink), counting TCP to `port` at its input. */
function outside(port: number): string {
  sh(
    `ip netns add out; ip -n out link set lo up
     ip link add u-out type veth peer name eth0 netns out; ip link set u-out master ${UNDERLAY_BRIDGE} up
     ip -n out addr add ${OUTSIDE}/24 dev eth0; ip -n out link set eth0 up
     ip netns exec out nft add table inet probe
     ip netns exec out nft add chain inet probe in '{ type filter hook input priority 0; }'
     ip netns exec out nft add rule inet probe in tcp dport ${port} counter`,
  );
  return "/run/netns/out";
}

function outsideCount(): number {
  const out = sh("ip netns exec out nft -j list chain inet probe in");
  const rule = (JSON.parse(out).nftables as Json[]).find((o) => o.rule)?.rule as { expr: Json[] };
  return (rule.expr.find((e) => e.counter)!.counter as { packets: number }).packets;
}

async function peersProgrammed(net: string, hosts: number[], routes: number): Promise<void> {
  for (const i of hosts)
    await until(`h${i} programs ${net}`, () => kernelOf(c.host(i), net).routes.length === routes, 8000);
}

test("--nat: egress to the outside is masqueraded, cross-host traffic keeps the context's own source", async () => {
  await createNetwork("ovn", "--subnet", "10.61.0.0/16", "--nat");
  const [n1, n2] = await Promise.all([
    createContext(c.host(1), "n1", "l2", "ovn"),
    createContext(c.host(2), "n2", "l2", "ovn"),
  ]);
  await peersProgrammed("ovn", [1, 2], 1);
  const out = startProbe(
    probeArgv([{ op: "serve", proto: "tcp", port: 7100, hosts: [OUTSIDE] }, { op: "wait" }], {
      netns: outside(7101),
    }),
  );
  c.adopt(out.child);
  assert.ok((await out.next()).ok);
  const egress = await tcpFrom(n1, OUTSIDE, 7100);
  assert.ok(egress.ok, JSON.stringify(egress));
  assert.equal(egress.data?.trim(), c.host(1).address4, "masqueraded to h1's uplink address");
  const server = await serveIn(n2!, 7100);
  const across = await tcpFrom(n1, n2.v4, 7100);
  assert.ok(across.ok, JSON.stringify(across));
  assert.equal(across.data?.trim(), n1.v4, "cross-host traffic is not masqueraded");
  await server.stop();
  await out.stop();
});

test("--internal holds across hosts: nothing leaves for the outside, the overlay's hosts reach each other", async () => {
  await createNetwork("ovi", "--subnet", "10.62.0.0/16", "--subnet", "fd62::/48", "--internal");
  const [i1, i2] = await Promise.all([
    createContext(c.host(1), "i1", "l2", "ovi"),
    createContext(c.host(2), "i2", "l2", "ovi"),
  ]);
  await peersProgrammed("ovi", [1, 2], 2);
  // No default route on an internal network; the routes to the overlay's subnets lead across hosts.
  assert.ok(await pingFrom(i1, i2.v4), "i1 -> i2");
  assert.ok(await pingFrom(i2, i1.v6!), "i2 -> i1 v6");
  const server = await serveIn(i2, 7101);
  const across = await tcpFrom(i1, i2.v4, 7101);
  assert.equal(across.data?.trim(), i1.v4, JSON.stringify(across));
  await server.stop();
  // A context that adds a default route of its own still gets nothing out.
  const gw = (
    JSON.parse(run(c.host(1), ["ip", "-j", "-n", "netctx-i1", "route", "show", "10.62.0.0/16"])) as Json[]
  )[0]!.gateway as string;
  run(c.host(1), ["ip", "-n", "netctx-i1", "route", "add", "default", "via", gw]);
  const before = outsideCount();
  const egress = await tcpFrom(i1, OUTSIDE, 7101);
  assert.equal(egress.ok, false, JSON.stringify(egress));
  assert.equal(outsideCount() - before, 0, "the outside saw a packet from an internal network");
});

test("VXLAN forged from an underlay address that is no member reaches no context; the same from a member does", async () => {
  const [h1, h2, h4] = [c.host(1), c.host(2), c.host(4)];
  const vni = JSON.parse(ok(await h1.netctx("network", "inspect", "ov"), "inspect")) as {
    cluster?: { vni: number };
    vni?: number;
  };
  const frame = {
    vni: vni.cluster?.vni ?? vni.vni!,
    mac: ipj(h1, ["link", "show", "nv-ov"])[0]!.address as string,
    src: ctx.a2!.v4,
    dst: ctx.a1!.v4,
    to: h1.address4,
  };
  const a1ns = ["ip", "netns", "exec", "netctx-a1"];
  run(h1, [...a1ns, "nft", "add", "table", "inet", "probe"]);
  run(h1, [...a1ns, "nft", "add", "chain", "inet", "probe", "in", "{ type filter hook input priority 0; }"]);
  run(h1, [
    ...a1ns,
    "nft",
    "add",
    "rule",
    "inet",
    "probe",
    "in",
    "udp",
    "dport",
    String(FORGED_PORT),
    "counter",
  ]);
  const counted = () => {
    const out = run(h1, [...a1ns, "nft", "-j", "list", "chain", "inet", "probe", "in"]);
    const rule = (JSON.parse(out).nftables as Json[]).find((o) => o.rule)?.rule as { expr: Json[] };
    return (rule.expr.find((e) => e.counter)!.counter as { packets: number }).packets;
  };
  run(h4, forgeVxlanArgv(frame));
  run(h4, forgeVxlanArgv(frame));
  await sleep(300);
  assert.equal(counted(), 0, "a frame from a non-member reached a1");
  // The same frame from a member's underlay address is delivered: it is well made, and only the guard stops it.
  run(h2, forgeVxlanArgv(frame));
  await until("the member's frame reaches a1", () => counted() === 1, 2000);
});

/** One CNI call by the plugin `netctx cni install` wrote for host h, run in h as a runtime would. */
function cniCall(h: TestHost, plugin: string, command: string, pod: string): CliResult {
  const conf = { cniVersion: "1.0.0", name: "ovc", type: "netctx" };
  const argv = h.argv([
    "env",
    `CNI_COMMAND=${command}`,
    `CNI_CONTAINERID=${pod}-${h.name}`,
    `CNI_NETNS=/run/netns/${pod}`,
    "CNI_IFNAME=eth0",
    "CNI_PATH=/usr/lib/cni",
    plugin,
  ]);
  const r = spawnSync(argv[0]!, argv.slice(1), { input: JSON.stringify(conf), encoding: "utf8", env: h.env });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test("CNI ADD on two hosts for one overlay network: the pods ping each other; DEL leaves nothing", async () => {
  // A network no host holds a block of yet: the first ADD on each host leases one, through its engine.
  await createNetwork("ovc", "--subnet", "10.63.0.0/16");
  const pods: { h: TestHost; plugin: string; address: string }[] = [];
  for (const h of [c.host(1), c.host(2)]) {
    const plugin = ok(
      await h.netctx("cni", "install", `${c.scratch}/${h.name}/cni-bin`),
      "cni install",
    ).trim();
    run(h, ["ip", "netns", "add", "pod"]);
    const added = cniCall(h, plugin, "ADD", "pod");
    assert.equal(added.code, 0, `ADD on ${h.name}: ${added.stdout}${added.stderr}`);
    const ips = (JSON.parse(added.stdout) as { ips: { address: string }[] }).ips;
    pods.push({ h, plugin, address: ips[0]!.address.split("/")[0]! });
  }
  await peersProgrammed("ovc", [1, 2], 1);
  for (const [from, to] of [
    [pods[0]!, pods[1]!],
    [pods[1]!, pods[0]!],
  ] as const) {
    const r = from.h.run([
      "ip",
      "netns",
      "exec",
      "pod",
      "ping",
      "-n",
      "-q",
      "-c",
      "1",
      "-W",
      "2",
      to.address,
    ]);
    assert.equal(r.code, 0, `${from.h.name} pod -> ${to.address}: ${r.stdout}${r.stderr}`);
  }
  for (const p of pods) {
    const del = cniCall(p.h, p.plugin, "DEL", "pod");
    assert.equal(del.code, 0, `DEL on ${p.h.name}: ${del.stdout}${del.stderr}`);
    run(p.h, ["ip", "netns", "del", "pod"]);
    const left = (
      JSON.parse(ok(await p.h.netctx("ls", "--json"), "ls")) as { name: string; networks?: unknown }[]
    )
      .map((x) => JSON.stringify(x))
      .filter((x) => x.includes("ovc"));
    assert.deepEqual(left, [], `${p.h.name}: contexts left on ovc`);
  }
});

test("gc --dry-run on every host finds nothing to do", async () => {
  for (const i of MEMBERS) {
    const report = JSON.parse(ok(await c.host(i).netctx("gc", "--dry-run", "--json"), "gc")) as {
      actions: unknown[];
    };
    assert.deepEqual(report.actions, [], `h${i}`);
  }
});
