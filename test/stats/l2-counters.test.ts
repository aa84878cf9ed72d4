/**
 * l2 counters on the wire: a known number of bytes sent one way over TCP between contexts raises the sender's tx and
 * the receiver's rx by at least that many, the other direction by ACKs only, and leave a bystander on the same network below it, on a bridge network (whose shortcut
 * hands frames from veth to veth past the host side), a routed one and a macvlan one (no host side at all). A
 * network's totals are its contexts' sum; an open TCP connection counts on both ends.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, test } from "node:test";
import { type ContextStats, type StatsView, statsView } from "../../src/engine/stats.ts";
import { Host } from "../../src/host.ts";
import { netctxJson, netctxOk } from "../utils/cli.ts";
import { testConfig } from "../utils/config.ts";
import { addVethNetns, contextNetns, delVethNetns, inNetns } from "../utils/netns.ts";
import { probeSync, startServing } from "../utils/socket-probe.ts";

/** Sent one way over TCP: the receiver answers only with ACKs (~66 bytes per one or two 1448-byte segments). */
const SENT = 1_000_000;
const OUTSIDE = { name: "stats-lan", hostIfname: "slan0" };

let host: Host;
before(() => {
  host = Host.open(testConfig());
});
after(() => {
  host.close();
  delVethNetns(OUTSIDE);
});

interface Inspect {
  addresses: string[];
  netns: string;
}

function v4(name: string): string {
  return netctxJson<Inspect>("inspect", name)
    .addresses.find((a) => !a.includes(":"))!
    .split("/")[0]!;
}

/** a sends SENT bytes over TCP to b's sink, both in their netns. */
async function sendOneWay(a: string, b: string, port: number): Promise<void> {
  const sink = await startServing({ op: "sink", port }, { netns: contextNetns(b) });
  try {
    const [sent] = probeSync({ netns: contextNetns(a) }, [
      { op: "send", host: v4(b), port, bytes: SENT },
    ]).results;
    assert.ok(sent?.ok, `send ${a} -> ${b}: ${JSON.stringify(sent)}`);
  } finally {
    await sink.stop();
  }
}

function of(view: StatsView, name: string): ContextStats {
  const c = view.contexts.find((x) => x.name === name);
  assert.ok(c, `${name} is in the view`);
  return c;
}

/** a sends to b: a's tx and b's rx grow by what was sent, the other way only by ACKs, the bystander c not at all. */
async function checkTraffic(network: string, [a, b, c]: string[], port: number): Promise<void> {
  const before = statsView(host);
  await sendOneWay(a!, b!, port);
  const now = statsView(host);
  const delta = (name: string, dir: "rx" | "tx", what: "bytes" | "packets" = "bytes") =>
    of(now, name)[dir][what] - of(before, name)[dir][what];
  assert.ok(delta(a!, "tx") >= SENT, `${a} sent ${delta(a!, "tx")} bytes, at least ${SENT}`);
  assert.ok(delta(b!, "rx") >= SENT, `${b} received ${delta(b!, "rx")} bytes, at least ${SENT}`);
  assert.ok(delta(a!, "rx") < SENT / 10, `${a} received ${delta(a!, "rx")} bytes: ACKs only`);
  assert.ok(delta(b!, "tx") < SENT / 10, `${b} sent ${delta(b!, "tx")} bytes: ACKs only`);
  assert.ok(delta(a!, "tx", "packets") >= SENT / 65536, "packets counted too");
  for (const dir of ["rx", "tx"] as const)
    assert.ok(delta(c!, dir) < SENT / 10, `the bystander ${c}: ${dir} ${delta(c!, dir)} bytes`);
  const net = now.networks.find((n) => n.name === network);
  assert.ok(net, `${network} is in the view`);
  const sum = (dir: "rx" | "tx") =>
    now.contexts.filter((x) => x.networks.includes(network)).reduce((s, x) => s + x[dir].bytes, 0);
  assert.equal(net.rx.bytes, sum("rx"), "a network's rx is the sum of its contexts'");
  assert.equal(net.tx.bytes, sum("tx"));
  assert.equal(of(now, a!).level, "l2");
  assert.deepEqual(of(now, a!).networks, [network]);
}

test("bridge: what the shortcut hands from veth to veth counts too", async () => {
  netctxOk("network", "create", "sb", "--driver", "bridge", "--subnet", "10.181.0.0/24");
  for (const n of ["ba", "bb", "bc"]) netctxOk("create", n, "--level", "l2", "--network", "sb");
  await checkTraffic("sb", ["ba", "bb", "bc"], 7401);
});

test("routed: the same without a bridge between the contexts", async () => {
  netctxOk("network", "create", "sr", "--driver", "routed", "--subnet", "10.182.0.0/24");
  for (const n of ["ra", "rb", "rc"]) netctxOk("create", n, "--level", "l2", "--network", "sr");
  await checkTraffic("sr", ["ra", "rb", "rc"], 7402);
});

test("macvlan: no host side, so the context's own interface is read inside its netns", async () => {
  addVethNetns({ ...OUTSIDE, addresses: ["10.183.0.254/24"] });
  netctxOk(
    "network",
    "create",
    "sm",
    "--driver",
    "macvlan",
    "--parent",
    OUTSIDE.hostIfname,
    "--subnet",
    "10.183.0.0/24",
    "--gateway",
    "10.183.0.254",
  );
  for (const n of ["ma", "mb", "mc"]) netctxOk("create", n, "--level", "l2", "--network", "sm");
  await checkTraffic("sm", ["ma", "mb", "mc"], 7403);
});

test("an open TCP connection counts on both its ends, and only there", async () => {
  const port = 7411;
  const sink = await startServing({ op: "sink", port }, { netns: contextNetns("bb") });
  const argv = inNetns(contextNetns("ba"), [
    process.execPath,
    "-e",
    `require("net").connect(${port}, "${v4("bb")}").on("connect", () => console.log("up")); setInterval(() => {}, 1000);`,
  ]);
  const client = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
  try {
    await new Promise((resolve) => client.stdout.once("data", resolve));
    const view = statsView(host);
    assert.equal(of(view, "ba").connections, 1, "the client's end");
    assert.equal(of(view, "bb").connections, 1, "the server's end");
    assert.equal(of(view, "bc").connections, 0, "the bystander");
  } finally {
    client.kill();
    await sink.stop();
  }
});

test("only the contexts asked for, and an unknown one is an error naming it", () => {
  const view = statsView(host, { names: ["ba"] });
  assert.deepEqual(
    view.contexts.map((c) => c.name),
    ["ba"],
  );
  assert.deepEqual(
    view.networks.map((n) => n.name),
    ["sb"],
  );
  assert.throws(() => statsView(host, { names: ["ba", "nosuch"] }), /nosuch/);
});
