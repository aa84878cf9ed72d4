/**
 * The engine's stats endpoints on its unix socket: `GET /v1/stats` in the shape the dashboard reads, an unknown
 * context named in the error, and `GET /metrics` as Prometheus text: every line parses, every family has its HELP and
 * TYPE, the traffic series carry context, network, level and node, and the engine's own timings are there.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { request } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { StatsView } from "../../src/engine/stats.ts";
import { netctxOk, type RunningEngine, startEngine } from "../utils/cli.ts";
import { waitFor } from "../utils/wait.ts";

const SOCKET = join(process.env.NETCTX_STATE_DIR!, "netctx.sock");
let engine: RunningEngine;

/** A GET on the engine's socket: status, content type and body as text. */
export function engineGet(path: string): Promise<{ status: number; type: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: SOCKET, method: "GET", path }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        text += d;
      });
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"] ?? ""), text }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

before(async () => {
  // A check every second: the gc histogram has something to show.
  engine = await startEngine({ args: ["--check-interval", "1"] });
  netctxOk("network", "create", "apin", "--driver", "bridge", "--subnet", "10.184.0.0/24");
  netctxOk("network", "create", "apih", "--driver", "host", "--subnet", "10.185.0.0/24");
  netctxOk("create", "x2", "--level", "l2", "--network", "apin");
  netctxOk("create", "x3", "--level", "l3", "--network", "apih");
  netctxOk("create", "xs", "--level", "socket", "--network", "apih");
});
after(() => engine.stop());

const counters = { bytes: 0, packets: 0, drops: 0 };
const keysOf = (o: object) => Object.keys(o).sort();

test("GET /v1/stats: every context and network, in the dashboard's shape", async () => {
  const started = Date.now();
  const r = await engineGet("/v1/stats");
  assert.equal(r.status, 200);
  const view = JSON.parse(r.text) as StatsView;
  assert.deepEqual(keysOf(view), ["at", "contexts", "networks", "node"]);
  assert.ok(view.at >= started - 1000 && view.at <= Date.now() + 1000, "at: ms since the epoch, now");
  assert.ok(view.node.length > 0);
  assert.deepEqual(
    view.contexts.map((c) => [c.name, c.level, c.networks]),
    [
      ["x2", "l2", ["apin"]],
      ["x3", "l3", ["apih"]],
      ["xs", "socket", ["apih"]],
    ],
  );
  for (const c of view.contexts) {
    assert.deepEqual(keysOf(c), ["connections", "level", "name", "networks", "rx", "tx"]);
    assert.deepEqual(keysOf(c.rx), keysOf(counters));
    assert.deepEqual(keysOf(c.tx), keysOf(counters));
    assert.equal(typeof c.connections, "number");
  }
  assert.deepEqual(
    view.networks.map((n) => [n.name, n.driver]),
    [
      ["apih", "host"],
      ["apin", "bridge"],
    ],
  );
  for (const n of view.networks) assert.deepEqual(keysOf(n), ["driver", "name", "rx", "tx"]);
});

test("GET /v1/stats?name=: only those; an unknown context is a 404 naming it", async () => {
  const one = JSON.parse((await engineGet("/v1/stats?name=x3")).text) as StatsView;
  assert.deepEqual(
    one.contexts.map((c) => c.name),
    ["x3"],
  );
  const bad = await engineGet("/v1/stats?name=x3&name=nosuch");
  assert.equal(bad.status, 404);
  assert.match(bad.text, /nosuch/);
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The text format (0.0.4), strictly: comments are HELP or TYPE, every sample `name{k="v",...} value`. */
function parsePrometheus(text: string): {
  samples: Sample[];
  types: Map<string, string>;
  helps: Set<string>;
} {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const helps = new Set<string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$/.exec(line);
    if (help) {
      helps.add(help[1]!);
      continue;
    }
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$/.exec(line);
    assert.ok(m, `not a Prometheus line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? "";
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy;
    let at = 0;
    for (let l = re.exec(body); l; l = re.exec(body)) {
      labels[l[1]!] = l[2]!;
      at = re.lastIndex;
    }
    assert.equal(at, body.length, `labels of ${line}`);
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { samples, types, helps };
}

const familyOf = (name: string, types: Map<string, string>) =>
  types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, "");

test("GET /metrics: Prometheus text with the labelled traffic series and the engine's timings", async () => {
  await engineGet("/v1/stats");
  // Let the periodic check (every second) run once.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const r = await engineGet("/metrics");
  assert.equal(r.status, 200);
  assert.match(r.type, /^text\/plain; version=0\.0\.4/);
  const { samples, types, helps } = parsePrometheus(r.text);
  for (const s of samples) {
    const family = familyOf(s.name, types);
    assert.ok(types.has(family) && helps.has(family), `${s.name} has HELP and TYPE`);
  }
  const one = (name: string, labels: Record<string, string>) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  const view = JSON.parse((await engineGet("/v1/stats")).text) as StatsView;
  for (const [context, network, level] of [
    ["x2", "apin", "l2"],
    ["x3", "apih", "l3"],
    ["xs", "apih", "socket"],
  ] as const)
    for (const name of ["netctx_context_receive_bytes_total", "netctx_context_transmit_drops_total"]) {
      const found = one(name, { context, network, level, node: view.node });
      assert.equal(found.length, 1, `${name} for ${context}`);
      assert.equal(types.get(name), "counter");
    }
  assert.equal(one("netctx_network_receive_packets_total", { network: "apin", driver: "bridge" }).length, 1);
  assert.equal(one("netctx_context_connections", { context: "x2", level: "l2" }).length, 1);
  // The l2 context's counter is the one /v1/stats shows (its veth is quiet: nothing moves between the two reads).
  const rx2 = view.contexts.find((c) => c.name === "x2")!.rx.bytes;
  assert.ok(Math.abs(one("netctx_context_receive_bytes_total", { context: "x2" })[0]!.value - rx2) < 2000);
  const stats = one("netctx_engine_request_duration_seconds_count", { route: "/v1/stats", method: "GET" });
  assert.ok(stats.length === 1 && stats[0]!.value >= 2, "the /v1/stats requests are counted");
  assert.equal(types.get("netctx_engine_request_duration_seconds"), "histogram");
  const gcs = one("netctx_gc_duration_seconds_count", { pass: "gc" });
  assert.ok(gcs.length === 1 && gcs[0]!.value >= 1, "the periodic gc is timed");
  assert.ok(one("netctx_reconcile_duration_seconds_count", { pass: "converge" })[0]!.value >= 1);
  assert.equal(one("netctx_etcd_up", {}).length, 0, "no etcd series on a lone host");
});

test("the engine keeps l2 counter files open between readings, and an rm through it leaves no netns alive", async () => {
  // A netns this one has an id for (through the veth into it) keeps the id until the kernel frees it: an open file
  // in it would keep it, unnamed, in this list. (Its veth is no witness here: the periodic gc removes an orphan one.)
  const netnsIds = () =>
    JSON.parse(execFileSync("ip", ["-j", "netns", "list-id"], { encoding: "utf8" }) || "[]").length;
  const before = netnsIds();
  netctxOk("create", "x9", "--level", "l2", "--network", "apin");
  assert.equal(netnsIds(), before + 1);
  // Two readings: the files are opened by the first and read again by the second.
  for (let i = 0; i < 2; i++) assert.equal((await engineGet("/v1/stats?name=x9")).status, 200);
  netctxOk("rm", "x9");
  await waitFor(() => netnsIds() === before, 3000);
  assert.equal(netnsIds(), before, "the context's netns was freed: nothing held it open");
});
