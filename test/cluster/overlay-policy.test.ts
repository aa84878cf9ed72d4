/**
 * A policy across hosts (issue 19) on an overlay network (issue 18): it is enforced at the receiving host. h1 holds
 * `db` (label app=db) on overlay network `pv` and `lan` on a local bridge network; h2 holds `web` on `pv`. A policy
 * made on h1 that lets `network:pv` reach app=db on one port opens exactly that port to web across the overlay,
 * keeps another port closed, keeps lan (not on pv) out of the allowed port, and leaves db's own connections to web
 * working; removing the policy opens db again.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { ContextView } from "../../src/engine/views.ts";
import { startCluster, stopCluster, type TestCluster } from "../utils/cluster.ts";
import {
  createContext,
  createOverlay,
  type Made,
  madeOf,
  ok,
  serveIn,
  tcpFrom,
} from "../utils/overlay-cli.ts";
import type { RunningProbe } from "../utils/socket-probe.ts";

const NET = "pv";
const ALLOWED = 7200;
const OTHER = 7201;
const BACK = 7202;
let c: TestCluster;
let db: Made;
let lan: Made;
let web: Made;
const servers: RunningProbe[] = [];

before(async () => {
  c = await startCluster({ hosts: 2, etcdHosts: [1] });
  await Promise.all([1, 2].map((i) => c.host(i).startEngine("--node-ttl", "3")));
  const [h1, h2] = [c.host(1), c.host(2)];
  await createOverlay(h1, c.hosts, NET, "--subnet", "10.83.0.0/16");
  ok(await h1.netctx("network", "create", "lan", "--subnet", "10.84.0.0/24"), "create lan");
  const view = ok(
    await h1.netctx("create", "db", "--level", "l2", "--network", NET, "--label", "app=db", "--json"),
    "create db",
  );
  db = madeOf(h1, JSON.parse(view) as ContextView);
  lan = await createContext(h1, "lan1", "l2", "lan");
  web = await createContext(h2, "web", "l2", NET);
  servers.push(await serveIn(db, ALLOWED, OTHER), await serveIn(web, BACK));
});
after(async () => {
  for (const s of servers) await s.stop();
  await stopCluster();
});

const reaches = async (from: Made, to: Made, port: number) => (await tcpFrom(from, to.v4, port, 1500)).ok;

test("without a policy, web (h2) and lan (h1) reach db on every port", async () => {
  assert.ok(await reaches(web, db, ALLOWED), "web -> db allowed port");
  assert.ok(await reaches(web, db, OTHER), "web -> db other port");
  assert.ok(await reaches(lan, db, ALLOWED), "lan -> db");
});

test("a policy on the receiving host opens exactly its port to the overlay network's remote contexts", async () => {
  ok(
    await c
      .host(1)
      .netctx(
        "policy",
        "add",
        "db-in",
        "--to",
        "app=db",
        "--from",
        `network:${NET}`,
        "--port",
        String(ALLOWED),
      ),
    "policy add",
  );
  const answer = await tcpFrom(web, db.v4, ALLOWED, 1500);
  assert.ok(answer.ok, `web -> db:${ALLOWED}: ${JSON.stringify(answer)}`);
  assert.equal(answer.data?.split(":")[0], web.v4, "db saw web's own address (no NAT across the overlay)");
  assert.equal(await reaches(web, db, OTHER), false, `web -> db:${OTHER} must be blocked`);
  assert.equal(await reaches(lan, db, ALLOWED), false, "lan is not on the overlay: blocked");
  assert.ok(await reaches(db, web, BACK), "db's own connection to web (replies come back)");
});

test("removing the policy opens db again", async () => {
  ok(await c.host(1).netctx("policy", "rm", "db-in"), "policy rm");
  assert.ok(await reaches(web, db, OTHER), "web -> db other port");
  assert.ok(await reaches(lan, db, ALLOWED), "lan -> db");
});
