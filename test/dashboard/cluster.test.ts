/**
 * The dashboard of a cluster member, opened from another machine: h1's engine listens on its underlay address with
 * a token file, the browser runs outside h1 (in the test's namespace, on the underlay bridge). Without the token:
 * 401. With it: h1's context, and h2 as a host of its own holding the overlay network.
 */
import assert from "node:assert/strict";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type Browser, chromium } from "playwright-core";
import { startCluster, stopCluster, type TestCluster } from "../utils/cluster.ts";
import { createContext, createOverlay, until } from "../utils/overlay-cli.ts";
import { get } from "./dashboard-http.ts";

const TOKEN = "cluster-dashboard-token-0123456789";
const BASE = "http://192.168.77.1:8470";
let c: TestCluster;
let browser: Browser;

before(async () => {
  c = await startCluster({ hosts: 2, etcdHosts: [1] });
  const tokenFile = join(c.scratch, "dashboard.token");
  writeFileSync(tokenFile, `${TOKEN}\n`);
  chmodSync(tokenFile, 0o600);
  await c.host(1).startEngine("--listen", "192.168.77.1:8470", "--token-file", tokenFile);
  await c.host(2).startEngine();
  await createOverlay(c.host(1), c.hosts, "pn", "--subnet", "10.86.0.0/16");
  await createContext(c.host(1), "a1", "l2", "pn");
  await createContext(c.host(2), "b1", "l2", "pn");
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  await stopCluster();
});

test("a member's dashboard on its underlay address: 401 without the token, the cluster's hosts with it", async () => {
  const refused = await get(`${BASE}/v1/cluster`);
  assert.equal(refused.status, 401);
  assert.doesNotMatch(refused.text, /h2|pn|a1/);
  // h2's node record names its block of pn once h2 leased one (b1's address).
  await until(
    "h2 holds a block of pn",
    async () => {
      const r = await get(`${BASE}/v1/cluster`, { authorization: `Bearer ${TOKEN}` });
      const status = JSON.parse(r.text) as { nodes: { name: string; blocks: { network: string }[] }[] };
      return status.nodes.some((n) => n.name === "h2" && n.blocks.some((b) => b.network === "pn"));
    },
    15_000,
  );
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const res = await page.goto(`${BASE}/?token=${TOKEN}`);
  assert.equal(res?.status(), 200);
  await page.locator('#contexts tr[data-context="a1"]').waitFor({ timeout: 10_000 });
  await page.locator('#hosts [data-host="h2"]').waitFor({ timeout: 10_000 });
  assert.match((await page.textContent('#hosts [data-host="h1"]')) ?? "", /^h1 \(this node\): pn/);
  assert.match(
    (await page.textContent('#hosts [data-host="h2"]')) ?? "",
    /^h2 \(192\.168\.77\.2, 1 contexts\): pn$/,
  );
  assert.match((await page.textContent("#summary")) ?? "", /^node h1 · 1 contexts/);
  await page.screenshot({
    path: join(process.env.NETCTX_DASHBOARD_SHOTS ?? process.env.NETCTX_TEST_SCRATCH!, "cluster.png"),
    fullPage: true,
  });
});
