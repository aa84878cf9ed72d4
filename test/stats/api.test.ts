/**
 * The engine's stats endpoints on its unix socket: `GET /v1/stats` in the shape the dashboard reads, and an unknown
 * context named in the error.
 */
import assert from "node:assert/strict";
import { request } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { StatsView } from "../../src/engine/stats.ts";
import { netctxOk, type RunningEngine, startEngine } from "../utils/cli.ts";

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
  engine = await startEngine();
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
