/**
 * BPF host routing of overlay networks (networks/shortcut-routing.ts) on the wire: two test hosts on one underlay
 * segment, one etcd member. Traffic between contexts of one overlay network on different hosts, over VXLAN (IPv4 and
 * IPv6) and with --direct-routing, passes neither host's IP forwarding (the hosts' forwarded-datagram counters stay
 * put) and still arrives; what must keep the host's path does: a context with bandwidth limits, and a context that
 * forges its source, whose packets the bridge's anti-spoofing then drops (it never reaches the other context).
 * The inbound programs hang on the VXLAN devices and, for --direct-routing, on the underlay device, which outlives the
 * network: removing the network takes its program off there on every host.
 * The promises the bypass must keep elsewhere have their own tests: the member guard (overlay-wire), --internal with
 * --direct-routing (overlay-direct-internal), policies on the receiving host (overlay-policy).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { progFdById, progInfo, queryPrograms } from "../../src/kernel/bpf/attach.ts";
import { closeFd } from "../../src/kernel/bpf/syscall.ts";
import { inNetns } from "../../src/kernel/netns.ts";
import { Rtnl } from "../../src/kernel/rtnl.ts";
import { startCluster, stopCluster, type TestCluster, type TestHost } from "../utils/cluster.ts";
import {
  createContext,
  createOverlay,
  type Made,
  ok,
  pingFrom,
  run,
  serveIn,
  tcpFrom,
  until,
} from "../utils/overlay-cli.ts";

const VX = "fx";
const DR = "fd";
const PORT = 7411;
let c: TestCluster;
const made: Record<string, Made> = {};

before(async () => {
  c = await startCluster({ hosts: 2, etcdHosts: [1] });
  await Promise.all([1, 2].map((i) => c.host(i).startEngine("--node-ttl", "3")));
  await createOverlay(c.host(1), c.hosts, VX, "--subnet", "10.84.0.0/16", "--subnet", "fd84::/48");
  await createOverlay(c.host(1), c.hosts, DR, "--subnet", "10.85.0.0/16", "--direct-routing");
  for (const [name, i, net] of [
    ["a1", 1, VX],
    ["a2", 2, VX],
    ["b1", 1, DR],
    ["b2", 2, DR],
  ] as const)
    made[name] = await createContext(c.host(i), name, "l2", net);
  ok(
    await c.host(1).netctx("create", "s1", "--level", "l2", "--network", VX, "--bandwidth", "100mbit"),
    "create s1",
  );
  const s1 = JSON.parse(ok(await c.host(1).netctx("inspect", "s1", "--json"), "inspect s1")) as {
    addresses: string[];
  };
  made.s1 = {
    host: c.host(1),
    name: "s1",
    v4: s1.addresses.find((a) => !a.includes(":"))!.split("/")[0]!,
    v6: undefined,
  };
  // Every path once, so routes, neighbours and peers are in place before anything is counted.
  for (const [from, to] of [
    ["a2", "a1"],
    ["b2", "b1"],
    ["a2", "s1"],
  ] as const)
    assert.ok(await pingFrom(made[from]!, made[to]!.v4, 10), `${from} -> ${to}`);
  assert.ok(await pingFrom(made.a2!, made.a1!.v6!, 10), "a2 -> a1 over IPv6");
});
after(() => stopCluster());

/** Datagrams host h's IP layer forwarded so far, IPv4 and IPv6 together (/proc/net/snmp, /proc/net/snmp6). */
function forwarded(h: TestHost): number {
  const snmp = run(h, ["cat", "/proc/net/snmp"]).split("\n");
  const names = snmp.find((l) => l.startsWith("Ip: "))!.split(/\s+/);
  const values = snmp.filter((l) => l.startsWith("Ip: "))[1]!.split(/\s+/);
  const v4 = Number(values[names.indexOf("ForwDatagrams")]);
  const v6 = run(h, ["cat", "/proc/net/snmp6"])
    .split("\n")
    .find((l) => l.startsWith("Ip6OutForwDatagrams"))!;
  return v4 + Number(v6.split(/\s+/)[1]);
}

/** Echo requests that reached context m (its netns's Icmp InEchos). */
function echoesIn(m: Made): number {
  const snmp = run(m.host, ["ip", "netns", "exec", `netctx-${m.name}`, "cat", "/proc/net/snmp"]).split("\n");
  const names = snmp.find((l) => l.startsWith("Icmp: "))!.split(/\s+/);
  const values = snmp.filter((l) => l.startsWith("Icmp: "))[1]!.split(/\s+/);
  return Number(values[names.indexOf("InEchos")]);
}

/** 20 pings from one context to an address, fast; whether all came back. */
function pings(m: Made, address: string, source?: string): boolean {
  const r = m.host.run([
    "ip",
    "netns",
    "exec",
    `netctx-${m.name}`,
    "ping",
    "-n",
    "-q",
    "-c",
    "20",
    "-i",
    "0.01",
    "-W",
    "1",
    ...(source ? ["-I", source] : []),
    address,
  ]);
  return r.code === 0;
}

test("across hosts, over VXLAN (IPv4, IPv6) and direct routing: ping and TCP arrive, and neither host forwards them", async () => {
  const server = await Promise.all([serveIn(made.a1!, PORT), serveIn(made.b1!, PORT)]);
  try {
    const before = [1, 2].map((i) => forwarded(c.host(i)));
    assert.ok(pings(made.a2!, made.a1!.v4), "a2 -> a1");
    assert.ok(pings(made.a2!, made.a1!.v6!), "a2 -> a1 over IPv6");
    assert.ok(pings(made.b2!, made.b1!.v4), "b2 -> b1");
    assert.ok(pings(made.a1!, made.a2!.v4), "a1 -> a2");
    for (const to of [made.a1!, made.b1!]) {
      const from = to === made.a1 ? made.a2! : made.b2!;
      const r = await tcpFrom(from, to.v4, PORT);
      assert.ok(r.ok, `TCP ${from.name} -> ${to.name}: ${JSON.stringify(r)}`);
    }
    const after = [1, 2].map((i) => forwarded(c.host(i)));
    // 80 pings and 2 TCP exchanges each way through both hosts: the slow path forwards 160+ datagrams on each.
    assert.deepEqual(
      after.map((n, i) => n - before[i]!),
      [0, 0],
      "datagrams the hosts forwarded",
    );
  } finally {
    await Promise.all(server.map((s) => s.stop()));
  }
});

test("a context with bandwidth limits keeps the host's path both ways", () => {
  const before = forwarded(c.host(1));
  assert.ok(pings(made.a2!, made.s1!.v4), "a2 -> s1");
  assert.ok(forwarded(c.host(1)) - before >= 40, "h1 forwarded the 20 requests to s1 and its 20 replies");
});

test("a context that forges its source reaches no context across hosts; with its own source it does", () => {
  const a2 = made.a2!;
  const forged = `${a2.v4.split(".").slice(0, 3).join(".")}.199`;
  // Root inside adds (then drops) an address of its choosing.
  const forgedAddress = (verb: "add" | "del") =>
    run(a2.host, [
      "ip",
      "netns",
      "exec",
      `netctx-${a2.name}`,
      "ip",
      "addr",
      verb,
      `${forged}/32`,
      "dev",
      "eth0",
    ]);
  forgedAddress("add");
  try {
    const seen = echoesIn(made.a1!);
    assert.ok(!pings(a2, made.a1!.v4, forged), "pings from the forged source came back");
    assert.equal(echoesIn(made.a1!) - seen, 0, "echo requests from the forged source reached a1");
    assert.ok(pings(a2, made.a1!.v4), "a2 -> a1 from its own address");
    assert.equal(echoesIn(made.a1!) - seen, 20, "echo requests from a2's own address reached a1");
  } finally {
    forgedAddress("del");
  }
});

/** Names of the tcx ingress programs on host h's device, [] when the device is gone. */
function tcxIngress(h: TestHost, dev: string): string[] | undefined {
  return inNetns(`/proc/${h.pid}/ns/net`, () => {
    const rtnl = Rtnl.open();
    try {
      const ifindex = rtnl.linkIndexIfAny(dev);
      if (ifindex === undefined) return undefined;
      return queryPrograms(ifindex, "TCX_INGRESS").map((id) => {
        const fd = progFdById(id);
        try {
          return progInfo(fd).name;
        } finally {
          closeFd(fd);
        }
      });
    } finally {
      rtnl.close();
    }
  });
}

test("the inbound programs sit on the VXLAN devices and the underlay device; network rm takes them off the underlay", async () => {
  for (const h of c.hosts) {
    for (const dev of [`nv-${VX}`, `nv-${DR}`])
      assert.deepEqual(tcxIngress(h, dev), ["nctx_inbound_1"], `${h.name} ${dev}`);
    assert.deepEqual(tcxIngress(h, "eth0"), ["nctx_inbound_1"], `${h.name} eth0: the direct network's alone`);
  }
  ok(await c.host(1).netctx("rm", "b1"), "rm b1");
  ok(await c.host(2).netctx("rm", "b2"), "rm b2");
  ok(await c.host(1).netctx("network", "rm", DR), `network rm ${DR}`);
  for (const h of c.hosts) {
    await until(`${DR} gone from ${h.name}`, () => tcxIngress(h, `nv-${DR}`) === undefined, 8000);
    assert.deepEqual(tcxIngress(h, "eth0"), [], `${h.name} eth0`);
    assert.deepEqual(tcxIngress(h, `nv-${VX}`), ["nctx_inbound_1"], `${h.name} nv-${VX}`);
  }
});
