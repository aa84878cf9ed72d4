/**
 * Shared-stack counters on the wire (the cgroup counter programs on the contexts' cgroup parent): a known number of
 * bytes sent one way over TCP between socket contexts, and between l3 contexts, raises the sender's tx and the
 * receiver's rx by at least that many and the other direction by ACKs only, and leaves a bystander alone. A packet
 * netctx's programs refuse is a drop of the context it was refused for: one for another context's address reaching a
 * wildcard listener (the ingress program), one a network policy denies (the policy program, at the sender).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, test } from "node:test";
import { type ContextStats, type StatsView, statsView } from "../../src/engine/stats.ts";
import { Host } from "../../src/host.ts";
import { netctxOk } from "../utils/cli.ts";
import { testConfig } from "../utils/config.ts";
import { probe, probeArgv, startProbe, startServing } from "../utils/socket-probe.ts";
import { tcpConnect } from "../utils/sockets.ts";
import { waitFor } from "../utils/wait.ts";

const SENT = 1_000_000;
const ADDR: Record<string, string> = {
  sa: "10.186.0.2",
  sb: "10.186.0.3",
  sc: "10.186.0.4",
  la: "10.187.0.2",
  lb: "10.187.0.3",
  lc: "10.187.0.4",
};

let host: Host;
before(() => {
  host = Host.open(testConfig());
  netctxOk("network", "create", "hs", "--driver", "host", "--subnet", "10.186.0.0/24");
  netctxOk("network", "create", "hl", "--driver", "host", "--subnet", "10.187.0.0/24");
  for (const n of ["sa", "sb", "sc"])
    netctxOk("create", n, "--level", "socket", "--network", "hs", "--ip", ADDR[n]!);
  for (const n of ["la", "lb", "lc"])
    netctxOk("create", n, "--level", "l3", "--network", "hl", "--ip", ADDR[n]!);
});
after(() => host.close());

function of(view: StatsView, name: string): ContextStats {
  const c = view.contexts.find((x) => x.name === name);
  assert.ok(c, `${name} is in the view`);
  return c;
}

/** a sends SENT bytes to b's sink, each in its context (netctx exec). */
async function checkTraffic([a, b, c]: string[], port: number): Promise<void> {
  const before = statsView(host);
  const sink = await startServing({ op: "sink", port, host: ADDR[b!]! }, { context: b! });
  try {
    const [sent] = await probe({ context: a! }, [{ op: "send", host: ADDR[b!]!, port, bytes: SENT }]);
    assert.ok(sent?.ok, `send ${a} -> ${b}: ${JSON.stringify(sent)}`);
  } finally {
    await sink.stop();
  }
  const now = statsView(host);
  const delta = (name: string, dir: "rx" | "tx") => of(now, name)[dir].bytes - of(before, name)[dir].bytes;
  assert.ok(delta(a!, "tx") >= SENT, `${a} sent ${delta(a!, "tx")} bytes, at least ${SENT}`);
  assert.ok(delta(b!, "rx") >= SENT, `${b} received ${delta(b!, "rx")} bytes, at least ${SENT}`);
  assert.ok(delta(a!, "rx") < SENT / 10, `${a} received ${delta(a!, "rx")} bytes: ACKs only`);
  assert.ok(delta(b!, "tx") < SENT / 10, `${b} sent ${delta(b!, "tx")} bytes: ACKs only`);
  assert.ok(of(now, a!).tx.packets - of(before, a!).tx.packets >= SENT / 65536, "packets counted too");
  for (const dir of ["rx", "tx"] as const) assert.equal(delta(c!, dir), 0, `the bystander ${c}'s ${dir}`);
}

test("socket contexts: the sender's tx and the receiver's rx", async () => {
  await checkTraffic(["sa", "sb", "sc"], 7501);
});

test("l3 contexts: the same", async () => {
  await checkTraffic(["la", "lb", "lc"], 7502);
});

test("a network's totals are its contexts' sum; a held connection counts for the context whose socket it is", async () => {
  const view = statsView(host);
  for (const net of ["hs", "hl"]) {
    const n = view.networks.find((x) => x.name === net);
    assert.ok(n);
    const members = view.contexts.filter((c) => c.networks.includes(net));
    assert.equal(
      n.rx.bytes,
      members.reduce((s, c) => s + c.rx.bytes, 0),
    );
    assert.equal(
      n.tx.packets,
      members.reduce((s, c) => s + c.tx.packets, 0),
    );
  }
  const port = 7503;
  const sink = await startServing({ op: "sink", port, host: ADDR.sb! }, { context: "sb" });
  const conn = net.connect(port, ADDR.sb!);
  try {
    await new Promise((resolve, reject) => conn.once("connect", resolve).once("error", reject));
    // The accepted socket belongs to the listener's cgroup; the test's own end is in no context.
    await waitFor(() => of(statsView(host), "sb").connections === 1);
    const now = statsView(host);
    assert.equal(of(now, "sb").connections, 1);
    assert.equal(of(now, "sa").connections, 0);
    assert.equal(of(now, "sc").connections, 0);
  } finally {
    conn.destroy();
    await sink.stop();
  }
});

test("a packet for another context's address at a wildcard listener is the listener's rx drop", async () => {
  const before = of(statsView(host), "sc");
  // sc listens without bind: the kernel auto-binds it to the wildcard, and its ingress program refuses what is not
  // addressed to sc. A connect to sa's address on that port (nobody else listens there) reaches sc's socket.
  const listener = startProbe(probeArgv([{ op: "listen-nobind" }, { op: "wait" }], { context: "sc" }));
  try {
    const listening = await listener.next();
    assert.ok(listening.ok && listening.port, JSON.stringify(listening));
    assert.equal(await tcpConnect(ADDR.sa!, listening.port!, 1200), "timeout");
  } finally {
    await listener.stop();
  }
  const now = of(statsView(host), "sc");
  assert.ok(now.rx.drops > before.rx.drops, `sc's rx drops ${before.rx.drops} -> ${now.rx.drops}`);
  assert.equal(now.tx.drops, before.tx.drops, "nothing refused on the way out");
  assert.equal(of(statsView(host), "sa").rx.drops, 0, "not the addressee's");
});

test("a packet a network policy denies is the sender's tx drop", async () => {
  netctxOk("policy", "add", "only-sa", "--to", "sb", "--from", "sa");
  const port = 7505;
  const sink = await startServing({ op: "sink", port, host: ADDR.sb! }, { context: "sb" });
  try {
    const before = statsView(host);
    const [refused] = await probe({ context: "sc" }, [{ op: "tcp", host: ADDR.sb!, port, timeoutMs: 1200 }]);
    assert.equal(refused?.ok, false, "the policy refuses sc -> sb");
    const now = statsView(host);
    assert.ok(
      of(now, "sc").tx.drops > of(before, "sc").tx.drops,
      `sc's tx drops ${of(before, "sc").tx.drops} -> ${of(now, "sc").tx.drops}`,
    );
    assert.equal(of(now, "sb").rx.drops, of(before, "sb").rx.drops, "nothing reached sb to refuse");
  } finally {
    await sink.stop();
    netctxOk("policy", "rm", "only-sa");
  }
});
