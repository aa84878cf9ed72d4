/**
 * Policy changes while traffic flows, with `netctx serve` running (the CLI goes through it, as users of a resident
 * engine do): `policy add` and `policy rm` change reach within 100 ms of the command returning, measured with short
 * probes started one after another from the test's namespace (the host) towards an l2 context on a bridge and a
 * socket context; and an established allowed connection keeps carrying data both ways across a change that would
 * no longer let it open.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { after, before, describe, test } from "node:test";
import { netctxOk, type RunningEngine, startEngine } from "../utils/cli.ts";
import { contextNetns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";
import { reach, tcpReaches } from "../utils/reach.ts";
import { type RunningProbe, startServing } from "../utils/socket-probe.ts";
import { tcpConnect } from "../utils/sockets.ts";
import { within } from "../utils/wait.ts";

const A = "10.101.0.10";
const B = "10.101.0.11";
const S = "10.102.0.11";
const LATE_A = "10.101.0.20";
const LATE_C = "10.101.0.21";
/** The host network's gateway: the host's own address the test connects to s from. */
const GW_H = "10.102.0.1";
/** How soon after the command returns a change must show on the wire (issue 19). */
const LIVE_MS = 100;
/** One probe's wait for an answer: a blocked one costs this, an allowed one well under a millisecond. */
const PROBE_MS = 25;

interface Target {
  name: string;
  address: string;
  /** The host's address the test connects from: one that no policy here allows. */
  from?: string;
}
const TARGETS: Target[] = [
  { name: "b (l2, bridge)", address: B },
  { name: "s (socket)", address: S, from: GW_H },
];

/**
 * Probe host:port from the test's namespace, one short connect after another, until three in a row end as `want`
 * ("connected" or blocked); returns when the first of those three started, in ms after `t0`.
 */
async function flipsAfter(
  t0: number,
  t: Target,
  port: number,
  want: "connected" | "blocked",
): Promise<number> {
  let firstOfRun: number | undefined;
  let run = 0;
  while (performance.now() - t0 < 5000) {
    const started = performance.now() - t0;
    const got =
      (await tcpConnect(t.address, port, PROBE_MS, t.from)) === "connected" ? "connected" : "blocked";
    if (got !== want) {
      run = 0;
      firstOfRun = undefined;
      continue;
    }
    firstOfRun ??= started;
    if (++run === 3) return firstOfRun;
  }
  return Number.POSITIVE_INFINITY;
}

/** A TCP connection from the test's namespace that stays open. */
function openConnection(t: Target, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({
      host: t.address,
      port,
      timeout: 1500,
      ...(t.from ? { localAddress: t.from } : {}),
    });
    s.once("connect", () => {
      s.setTimeout(0);
      resolve(s);
    });
    s.once("timeout", () => {
      s.destroy();
      reject(new Error(`connect to ${t.address}:${port}: timeout`));
    });
    s.once("error", reject);
  });
}

/** Data out after the change, and the sink's close back: the connection still works both ways. */
async function stillCarries(conn: net.Socket, what: string): Promise<void> {
  const closed = new Promise<void>((resolve) => conn.once("close", () => resolve()));
  conn.end(Buffer.alloc(64 * 1024));
  try {
    await within(closed, 3000, `${what}: the established connection carrying data and closing`);
  } finally {
    conn.destroy();
  }
}

describe("live policy changes through the engine", () => {
  const servers: RunningProbe[] = [];
  let engine: RunningEngine | undefined;

  before(async () => {
    netctxOk("network", "create", "lb", "--subnet", "10.101.0.0/24");
    netctxOk("network", "create", "lh", "--driver", "host", "--subnet", "10.102.0.0/24");
    netctxOk("create", "a", "--level", "l2", "--network", "lb", "--ip", A);
    netctxOk("create", "b", "--level", "l2", "--network", "lb", "--ip", B);
    netctxOk("create", "s", "--level", "socket", "--network", "lh", "--ip", S);
    for (const [at, host] of [
      [{ netns: contextNetns("b") }, B],
      [{ context: "s" }, S],
    ] as const) {
      servers.push(await startServing({ op: "serve", proto: "tcp", port: 81, hosts: [host] }, at));
      servers.push(await startServing({ op: "sink", port: 82, host }, at));
    }
    assert.ok(ping(contextNetns("a"), B));
    engine = await startEngine();
    assert.match(engine.log(), /serving on/);
  });

  after(async () => {
    await engine?.stop();
    for (const s of servers) await s.stop();
    netctxOk("policy", "rm", "--ignore", "select", "allow-host", "other");
    netctxOk("rm", "a", "b", "s");
    netctxOk("network", "rm", "lb", "lh");
  });

  for (const t of TARGETS)
    test(`${t.name}: policy add and rm change reach within ${LIVE_MS} ms of the command returning`, async (tc) => {
      assert.equal(await tcpConnect(t.address, 81, 1000, t.from), "connected", "open before");
      netctxOk("policy", "add", "select", "--to", t.address, "--from", "a", "--port", "80");
      const closedAfter = await flipsAfter(performance.now(), t, 81, "blocked");
      netctxOk("policy", "rm", "select");
      const openedAfter = await flipsAfter(performance.now(), t, 81, "connected");
      tc.diagnostic(
        `blocked ${closedAfter.toFixed(1)} ms after add, open ${openedAfter.toFixed(1)} ms after rm`,
      );
      assert.ok(closedAfter <= LIVE_MS, `blocked ${closedAfter} ms after policy add`);
      assert.ok(openedAfter <= LIVE_MS, `open again ${openedAfter} ms after policy rm`);
    });

  for (const t of TARGETS) {
    test(`${t.name}: a connection allowed when opened survives the rm of the policy that allowed it`, async () => {
      netctxOk("policy", "add", "select", "--to", t.address, "--from", "a", "--port", "80");
      netctxOk("policy", "add", "allow-host", "--to", t.address, "--from", "host", "--port", "82");
      try {
        const conn = await openConnection(t, 82);
        conn.write("before");
        netctxOk("policy", "rm", "allow-host");
        assert.equal(await tcpConnect(t.address, 82, 500, t.from), "timeout", "a new connection is blocked");
        await stillCarries(conn, t.name);
      } finally {
        netctxOk("policy", "rm", "--ignore", "select", "allow-host");
      }
    });

    test(`${t.name}: a connection opened before any policy survives the first one selecting its end`, async () => {
      const conn = await openConnection(t, 82);
      conn.write("before");
      netctxOk("policy", "add", "select", "--to", t.address, "--from", "a", "--port", "80");
      try {
        assert.equal(await tcpConnect(t.address, 82, 500, t.from), "timeout", "a new connection is blocked");
        await stillCarries(conn, t.name);
      } finally {
        netctxOk("policy", "rm", "select");
      }
    });

    test(`${t.name}: a connection opened while other policies hold survives a new one selecting its end`, async () => {
      netctxOk("policy", "add", "other", "--to", "a", "--from", "b", "--port", "80");
      try {
        const conn = await openConnection(t, 82);
        conn.write("before");
        netctxOk("policy", "add", "select", "--to", t.address, "--from", "a", "--port", "80");
        assert.equal(await tcpConnect(t.address, 82, 500, t.from), "timeout", "a new connection is blocked");
        await stillCarries(conn, t.name);
      } finally {
        netctxOk("policy", "rm", "--ignore", "select", "other");
      }
    });
  }

  test("labels through the engine: a context made later matches, a label changed in place by apply stops matching", async () => {
    netctxOk("policy", "add", "to-late", "--to", "app=late", "--from", "a", "--port", "80");
    const dir = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH ?? "/tmp", "reach-live-"));
    const scene = (labels: string) => {
      const path = join(dir, "scene.yaml");
      writeFileSync(
        path,
        `name: late\ncontexts:\n  - { name: late-a, level: l2, networks: [lb], ips: [${LATE_A}], labels: { ${labels} } }\n`,
      );
      return path;
    };
    const lateServers: RunningProbe[] = [];
    try {
      netctxOk("create", "late-c", "--level", "l2", "--network", "lb", "--ip", LATE_C, "--label", "app=late");
      netctxOk("apply", scene("app: late"));
      for (const [name, host] of [
        ["late-c", LATE_C],
        ["late-a", LATE_A],
      ] as const)
        for (const port of [80, 81])
          lateServers.push(
            await startServing(
              { op: "serve", proto: "tcp", port, hosts: [host] },
              { netns: contextNetns(name) },
            ),
          );
      const fromA = { netns: contextNetns("a") };
      const probes = {
        "a->late-c tcp 80": () => tcpReaches(fromA, LATE_C, 80),
        "a->late-c tcp 81": () => tcpReaches(fromA, LATE_C, 81),
        "a->late-a tcp 80": () => tcpReaches(fromA, LATE_A, 80),
        "a->late-a tcp 81": () => tcpReaches(fromA, LATE_A, 81),
      };
      assert.deepEqual(await reach(probes), {
        "a->late-c tcp 80": true,
        "a->late-c tcp 81": false,
        "a->late-a tcp 80": true,
        "a->late-a tcp 81": false,
      });
      netctxOk("apply", scene("app: early"));
      assert.deepEqual(await reach(probes), {
        "a->late-c tcp 80": true,
        "a->late-c tcp 81": false,
        "a->late-a tcp 80": true,
        "a->late-a tcp 81": true,
      });
    } finally {
      for (const p of lateServers) await p.stop();
      netctxOk("rm", "--ignore", "late-c");
      netctxOk("destroy", join(dir, "scene.yaml"));
      netctxOk("policy", "rm", "to-late");
    }
  });
});
