/**
 * Bandwidth limits measured on the wire: a bounded TCP transfer each way between the host and a limited
 * context lands near the limit (0.5x-1.5x), an unlimited context is far faster, rm leaves no ifb or qdisc.
 * The CNI `bandwidth` and `portMappings` capabilities go through the same engine (cniAdd/cniDel in-process).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawnSync } from "node:child_process";
import { after, before, test } from "node:test";
import { cniAdd, cniDel, contextNameFor } from "../../src/cni/verbs.ts";
import { publishedElements } from "../../src/firewall/publish.ts";
import { Host } from "../../src/host.ts";
import { netctx, netctxJson, netctxOk } from "../utils/cli.ts";
import { testConfig } from "../utils/config.ts";
import { links } from "../utils/kernel-oracle.ts";
import { netnsPath } from "../utils/netns.ts";
import { must } from "../utils/shell.ts";
import { probeSync, startServing } from "../utils/socket-probe.ts";

const LIMIT = 20_000_000;
const BYTES = 2_500_000;
const servers: ChildProcess[] = [];

async function sink(ns: string | undefined, port: number): Promise<void> {
  servers.push((await startServing({ op: "sink", port }, { netns: ns && netnsPath(ns) })).child);
}

/** Bits per second of one bounded transfer. */
function rate(ns: string | undefined, host: string, port: number): number {
  const { results, stderr } = probeSync({ netns: ns && netnsPath(ns) }, [
    { op: "send", host, port, bytes: BYTES },
  ]);
  const [sent] = results;
  if (!sent?.ok) throw new Error(`send to ${host}:${port}: ${sent?.code ?? stderr}`);
  return (BYTES * 8) / Number(sent.value);
}

function qdiscs(dev: string): string[] {
  const r = spawnSync("tc", ["-j", "qdisc", "show", "dev", dev], { encoding: "utf8" });
  if (r.status !== 0) return [];
  return (JSON.parse(r.stdout || "[]") as { kind: string }[]).map((q) => q.kind);
}

before(async () => {
  netctxOk("network", "create", "bw", "--driver", "bridge", "--subnet", "10.61.0.0/24");
  netctxOk(
    "create",
    "slow",
    "--level",
    "l2",
    "--network",
    "bw",
    "--ip",
    "10.61.0.10",
    "--bandwidth",
    "20mbit",
  );
  netctxOk("create", "fast", "--level", "l2", "--network", "bw", "--ip", "10.61.0.11");
  await sink(undefined, 5001);
  await sink("netctx-slow", 5001);
  await sink("netctx-fast", 5001);
});

after(() => {
  for (const s of servers) if (s.pid !== undefined && s.exitCode === null) process.kill(s.pid);
  netctx("rm", "slow", "fast");
});

test("the kernel holds a tbf on the host veth and an ifb with a tbf for the context's egress", () => {
  assert.ok(qdiscs("nc-slow").includes("tbf"));
  assert.ok(qdiscs("nc-slow").includes("ingress"));
  assert.ok(qdiscs("nb-slow").includes("tbf"));
  assert.ok(!qdiscs("nc-fast").includes("tbf"));
  const view = netctxJson<{ bandwidth?: { ingressRate?: number; live?: { ingress?: { rate: number } } } }>(
    "inspect",
    "slow",
  );
  assert.equal(view.bandwidth?.ingressRate, LIMIT);
  assert.equal(view.bandwidth?.live?.ingress?.rate, LIMIT);
});

test("limited both ways to about the rate; unlimited is much faster", () => {
  const egress = rate("netctx-slow", "10.61.0.1", 5001);
  const ingress = rate(undefined, "10.61.0.10", 5001);
  const free = rate(undefined, "10.61.0.11", 5001);
  const mbit = (r: number) => `${(r / 1e6).toFixed(1)} mbit/s`;
  assert.ok(egress > 0.5 * LIMIT && egress < 1.5 * LIMIT, `egress ${mbit(egress)}`);
  assert.ok(ingress > 0.5 * LIMIT && ingress < 1.5 * LIMIT, `ingress ${mbit(ingress)}`);
  assert.ok(free > 5 * LIMIT, `unlimited ${mbit(free)}`);
});

test("a bad rate is refused naming the field", () => {
  const r = netctx("create", "bad", "--level", "l2", "--network", "bw", "--bandwidth", "fast");
  assert.equal(r.code, 1);
  assert.match(r.stderr, /bandwidth/);
  const l3 = netctx("create", "bad", "--level", "socket", "--network", "bw", "--bandwidth", "1mbit");
  assert.equal(l3.code, 1);
});

test("rm removes the ifb and the qdiscs", () => {
  // The context's processes end first, or they keep its netns (and veth) alive past rm.
  const slowSink = servers[1];
  if (slowSink?.pid !== undefined && slowSink.exitCode === null) process.kill(slowSink.pid);
  const t0 = Date.now();
  netctxOk("rm", "slow");
  assert.ok(Date.now() - t0 < 10_000, "rm is quick");
  const names = links().map((l) => l.ifname);
  assert.ok(!names.includes("nb-slow"), "ifb removed");
  assert.deepEqual(qdiscs("nb-slow"), []);
  assert.ok(!qdiscs("nc-slow").includes("tbf"), "no tbf left on the veth");
});

test("CNI: bandwidth and portMappings capabilities, and DEL removes them", () => {
  must(["ip", "netns", "add", "cni1"]);
  const host = Host.open(testConfig());
  try {
    const env = {
      command: "ADD" as const,
      containerId: "bwtest1",
      netns: "/run/netns/cni1",
      ifname: "eth0",
      args: new Map<string, string>(),
      path: "",
    };
    const conf = {
      cniVersion: "1.0.0",
      name: "bwconf",
      type: "netctx",
      network: "bw",
      runtimeConfig: {
        portMappings: [{ hostPort: 8443, containerPort: 443, protocol: "tcp" }],
        bandwidth: {
          ingressRate: 8_000_000,
          ingressBurst: 800_000,
          egressRate: 4_000_000,
          egressBurst: 400_000,
        },
      },
    };
    cniAdd(host, env, conf);
    const name = contextNameFor("bwtest1", "eth0");
    const hostIf = `nc-${name}`;
    const ifb = `nb-${name}`;
    assert.ok(qdiscs(hostIf).includes("tbf"));
    assert.ok(qdiscs(ifb).includes("tbf"));
    assert.deepEqual(
      publishedElements().map((e) => `${e.context} ${e.key} ${e.target}`),
      [`${name} tcp . 8443 10.61.0.2 . 443`],
    );
    // The runtime deletes the netns first: DEL still removes the elements, the ifb and the leases.
    must(["ip", "netns", "del", "cni1"]);
    cniDel(host, { ...env, command: "DEL" });
    // DEL queues the teardown (the engine runs it when requests pause, a one-shot plugin at its end).
    host.flushDeferred();
    assert.deepEqual(publishedElements(), []);
    assert.ok(!links().some((l) => l.ifname === ifb || l.ifname === hostIf));
  } finally {
    host.close();
  }
});
