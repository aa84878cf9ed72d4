/**
 * The overlay data path across hosts (issue 18), without etcd: three test hosts on one underlay segment
 * (test/utils/cluster.ts), each with a bridge holding its block's gateways and one context netns `c` on it, made by
 * hand with `ip`. The data path module runs in each host (test/utils/overlay-agent.ts) with the other two as peers, as
 * the engine will from etcd watches. A fourth host on the underlay is no member: the VXLAN it forges reaches nobody.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, test } from "node:test";
import type { OverlayLocal, OverlayPeer, PeerSync } from "../../src/networks/overlay-peers.ts";
import { startCluster, stopCluster, type TestCluster, type TestHost } from "../utils/cluster.ts";
import { type Json, txPackets } from "../utils/kernel-oracle.ts";
import { type AgentInput, OVERLAY_AGENT } from "../utils/overlay-agent.ts";
import { ping } from "../utils/ping.ts";
import { forgeVxlanArgv } from "../utils/vxlan-forge.ts";

const VNI = 100;
const DEV = "nv-ov";
const MEMBERS = [1, 2, 3];

let cluster: TestCluster;
const macs = new Map<number, string>();

const block4 = (i: number) => `10.88.${i}.0/24`;
const block6 = (i: number) => `fd88:0:0:${i}::/64`;
const ctx4 = (i: number) => `10.88.${i}.2`;
const ctx6 = (i: number) => `fd88:0:0:${i}::2`;

function local(h: TestHost): OverlayLocal {
  return {
    network: "ov",
    vni: VNI,
    underlay: h.address4,
    underlayDev: "eth0",
    blocks: [block4(h.index), block6(h.index)],
    subnets: ["10.88.0.0/16", "fd88::/48"],
  };
}

function peerOf(i: number, direct = false): OverlayPeer {
  const h = cluster.host(i);
  return {
    node: h.name,
    underlay: h.address4,
    vtepMac: macs.get(i) ?? "",
    blocks: [block4(i), block6(i)],
    ...(direct ? { direct } : {}),
  };
}

function run(h: TestHost, argv: string[]): string {
  const r = h.run(argv);
  if (r.code !== 0) throw new Error(`${h.name}: ${argv.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

function agent(
  h: TestHost,
  input: Omit<AgentInput, "local">,
): { device: { mac: string }; sync?: PeerSync; members?: { added: number; removed: number } } {
  // nsenter -m starts in the host's root directory: tsx is named by its resolved path, not looked up from there.
  const out = run(h, [
    process.execPath,
    "--import",
    import.meta.resolve("tsx"),
    OVERLAY_AGENT,
    JSON.stringify({ local: local(h), ...input }),
  ]);
  return JSON.parse(out);
}

/** The netns of context c of host h, as a path the test's own namespace can open. */
const ctxNetns = (h: TestHost) => `/proc/${h.pid}/root/run/netns/c`;
const hostNetns = (h: TestHost) => `/proc/${h.pid}/ns/net`;

const ipjIn = (h: TestHost, args: string[]): Json[] => JSON.parse(run(h, ["ip", "-j", ...args]) || "[]");
const fdbIn = (h: TestHost): Json[] =>
  JSON.parse(run(h, ["bridge", "-j", "fdb", "show", "dev", DEV]) || "[]");
const permanent = (h: TestHost) =>
  ipjIn(h, ["neigh", "show", "dev", DEV]).filter((n) => (n.state as string[]).includes("PERMANENT"));

before(async () => {
  cluster = await startCluster({ hosts: 4, etcdHosts: [] });
  for (const i of MEMBERS) {
    const h = cluster.host(i);
    run(h, [
      "sh",
      "-ec",
      `ip link add br0 type bridge; ip link set br0 up
       ip addr add 10.88.${i}.1/24 dev br0; ip addr add fd88:0:0:${i}::1/64 dev br0 nodad
       ip netns add c; ip -n c link set lo up
       ip link add vc type veth peer name ceth netns c; ip link set vc master br0 up
       ip -n c addr add ${ctx4(i)}/24 dev ceth; ip -n c addr add ${ctx6(i)}/64 dev ceth nodad
       ip -n c link set ceth up
       ip -n c route add default via 10.88.${i}.1; ip -n c -6 route add default via fd88:0:0:${i}::1`,
    ]);
  }
  // First the devices (a peer's VTEP MAC exists once its device does, as in a node record), then the peers.
  for (const i of MEMBERS) macs.set(i, agent(cluster.host(i), {}).device.mac);
});

after(() => stopCluster());

const others = (i: number) => MEMBERS.filter((j) => j !== i);

test("each host programs its two peers: one route per peer block, one neighbour per peer block, one FDB entry per peer", () => {
  for (const i of MEMBERS) {
    const r = agent(cluster.host(i), { peers: others(i).map((j) => peerOf(j)) });
    assert.deepEqual(r.sync?.skipped, []);
    assert.deepEqual(r.sync?.failed, []);
    assert.equal(r.sync?.added, 10);
    assert.equal(r.sync?.kernelOps, 10);
  }
  const h1 = cluster.host(1);
  const routes = [
    ...ipjIn(h1, ["-4", "route", "show", "dev", DEV]),
    ...ipjIn(h1, ["-6", "route", "show", "dev", DEV]),
  ]
    .filter((r) => r.protocol === "110" || r.protocol === 110)
    .map((r) => `${r.dst} via ${r.gateway} ${(r.flags as string[]).join(",")}`)
    .sort();
  assert.deepEqual(routes, [
    "10.88.2.0/24 via 10.88.2.0 onlink",
    "10.88.3.0/24 via 10.88.3.0 onlink",
    "fd88:0:0:2::/64 via fd88:0:0:2:: onlink",
    "fd88:0:0:3::/64 via fd88:0:0:3:: onlink",
  ]);
  assert.deepEqual(
    permanent(h1)
      .map((n) => `${n.dst} ${n.lladdr}`)
      .sort(),
    [
      `10.88.2.0 ${macs.get(2)}`,
      `10.88.3.0 ${macs.get(3)}`,
      `fd88:0:0:2:: ${macs.get(2)}`,
      `fd88:0:0:3:: ${macs.get(3)}`,
    ].sort(),
  );
  assert.deepEqual(
    fdbIn(h1)
      .map((e) => `${e.mac} ${e.dst} ${(e.flags as string[]).join(",")} ${e.state}`)
      .sort(),
    [`${macs.get(2)} 192.168.77.2 self permanent`, `${macs.get(3)} 192.168.77.3 self permanent`].sort(),
  );
  // Again with the same peers: the kernel is observed (a fresh process) and nothing is changed.
  const again = agent(h1, { peers: others(1).map((j) => peerOf(j)) });
  assert.deepEqual([again.sync?.kernelOps, again.sync?.reads], [0, 4]);
});

test("contexts on different hosts reach each other over IPv4 and IPv6, ping and TCP", async () => {
  for (const i of MEMBERS)
    for (const j of others(i)) {
      assert.ok(ping(ctxNetns(cluster.host(i)), ctx4(j), { tries: 3 }), `h${i} -> ${ctx4(j)}`);
      assert.ok(ping(ctxNetns(cluster.host(i)), ctx6(j), { tries: 3 }), `h${i} -> ${ctx6(j)}`);
    }
  const h2 = cluster.host(2);
  const server = spawn(
    "nsenter",
    h2
      .argv([
        "ip",
        "netns",
        "exec",
        "c",
        "python3",
        "-c",
        `import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 7000)); s.listen(8); print("listening", flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"echo:" + c.recv(64)); c.close()`,
      ])
      .slice(1),
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  cluster.adopt(server);
  await new Promise<void>((resolve) => server.stdout!.once("data", () => resolve()));
  for (const address of [ctx4(2), ctx6(2)])
    for (const i of [1, 3]) {
      const r = cluster.host(i).run([
        "ip",
        "netns",
        "exec",
        "c",
        "python3",
        "-c",
        `import socket, sys
s = socket.create_connection((sys.argv[1], 7000), 3); s.sendall(b"h${i}"); print(s.recv(64).decode())`,
        address,
      ]);
      assert.equal(r.stdout.trim(), `echo:h${i}`, `h${i} -> [${address}]:7000 ${r.stderr}`);
    }
  server.kill("SIGKILL");
});

/**
 * A VXLAN frame sent from `from`'s host namespace to h2's underlay address: inner Ethernet to h2's VTEP MAC, inner
 * IPv4 from h1's context to h2's, UDP to port 9999, which h2's context counts.
 */
function forge(from: TestHost): void {
  run(
    from,
    forgeVxlanArgv({ vni: VNI, mac: macs.get(2)!, src: ctx4(1), dst: ctx4(2), to: cluster.host(2).address4 }),
  );
}

function counted(h: TestHost): number {
  const out = run(h, ["ip", "netns", "exec", "c", "nft", "-j", "list", "chain", "inet", "probe", "in"]);
  const rule = (JSON.parse(out).nftables as Json[]).find((o) => o.rule)?.rule as { expr: Json[] };
  const counter = rule.expr.find((e) => e.counter)?.counter as { packets: number };
  return counter.packets;
}

test("VXLAN forged from an underlay address that is no member reaches no context; the same from a member does", () => {
  const h1 = cluster.host(1);
  const h2 = cluster.host(2);
  const h4 = cluster.host(4);
  run(h2, [
    "ip",
    "netns",
    "exec",
    "c",
    "nft",
    "add table inet probe; add chain inet probe in { type filter hook input priority 0; }; add rule inet probe in udp dport 9999 counter",
  ]);
  // Without the guard the forged frame is delivered: it is well made, and VXLAN itself checks nothing.
  forge(h4);
  assert.equal(counted(h2), 1, "before the guard, h4's frame reaches h2's context");

  const members = MEMBERS.flatMap((i) => [cluster.host(i).address4, cluster.host(i).address6]);
  for (const i of MEMBERS) {
    const r = agent(cluster.host(i), { members });
    assert.deepEqual(r.members, { added: 7, removed: 0 }, "6 addresses and the port");
  }
  forge(h4);
  forge(h4);
  assert.equal(counted(h2), 1, "h4 is no member: its frames are dropped");
  forge(h1);
  assert.equal(counted(h2), 2, "h1 is a member: its frame is delivered");
  const drops = run(h2, ["nft", "-j", "list", "chain", "inet", "netctx", "overlay_in"]);
  assert.match(drops, /"packets": 2\b/, "the guard counted h4's two frames");

  // The overlay still carries the members' real traffic.
  assert.ok(ping(ctxNetns(h1), ctx4(2), { tries: 3 }));
  assert.ok(ping(ctxNetns(h1), ctx6(3), { tries: 3 }));

  // A member that leaves: element-wise, one removal; its frames are dropped from then on.
  const without1 = members.filter((a) => a !== h1.address4);
  assert.deepEqual(agent(h2, { members: without1 }).members, { added: 0, removed: 1 });
  forge(h1);
  assert.equal(counted(h2), 2);
  assert.deepEqual(agent(h2, { members }).members, { added: 1, removed: 0 });
});

test("a peer leaves: its route, neighbours and FDB entry go, at a fixed cost; it comes back the same way", () => {
  const h1 = cluster.host(1);
  const left = agent(h1, { peers: [peerOf(2)] });
  assert.deepEqual([left.sync?.removed, left.sync?.added, left.sync?.kernelOps], [5, 0, 5]);
  assert.ok(!ipjIn(h1, ["-4", "route", "show", "dev", DEV]).some((r) => r.dst === block4(3)));
  assert.ok(!ipjIn(h1, ["-6", "route", "show", "dev", DEV]).some((r) => r.dst === block6(3)));
  assert.ok(!permanent(h1).some((n) => n.lladdr === macs.get(3)));
  assert.ok(!fdbIn(h1).some((e) => e.mac === macs.get(3)));
  assert.ok(!ping(ctxNetns(h1), ctx4(3)), "h3's block is no longer routed over the overlay");
  assert.ok(ping(ctxNetns(h1), ctx4(2)));
  const back = agent(h1, { peers: [peerOf(2), peerOf(3)] });
  assert.deepEqual([back.sync?.removed, back.sync?.added, back.sync?.kernelOps], [0, 5, 5]);
  assert.ok(ping(ctxNetns(h1), ctx4(3), { tries: 3 }));
});

test("direct routing between hosts on one segment: no encapsulation, the VXLAN device sends nothing", () => {
  const h1 = cluster.host(1);
  const h3 = cluster.host(3);
  const on1 = agent(h1, { peers: [peerOf(2), peerOf(3, true)] });
  const on3 = agent(h3, { peers: [peerOf(1, true), peerOf(2)] });
  // The IPv4 block's route moves to the underlay, its neighbour goes; IPv6 stays on VXLAN (the underlay is IPv4).
  assert.deepEqual([on1.sync?.changed, on1.sync?.removed, on1.sync?.kernelOps], [1, 1, 2]);
  assert.deepEqual([on3.sync?.changed, on3.sync?.removed, on3.sync?.kernelOps], [1, 1, 2]);
  const direct = ipjIn(h1, ["-4", "route", "show", block4(3)]);
  assert.deepEqual(
    direct.map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}`),
    [`${block4(3)} via ${h3.address4} dev eth0`],
  );
  const tx1 = txPackets(DEV, hostNetns(h1));
  const tx3 = txPackets(DEV, hostNetns(h3));
  assert.ok(ping(ctxNetns(h1), ctx4(3), { count: 5, tries: 3 }));
  assert.equal(txPackets(DEV, hostNetns(h1)), tx1, "h1's VXLAN device sent nothing");
  assert.equal(txPackets(DEV, hostNetns(h3)), tx3, "h3's VXLAN device sent nothing");
  // IPv6 between them, and h2, still go over VXLAN.
  assert.ok(ping(ctxNetns(h1), ctx6(3), { tries: 3 }));
  assert.ok(txPackets(DEV, hostNetns(h1)) > tx1);
  assert.ok(ping(ctxNetns(h1), ctx4(2), { tries: 3 }));
});
