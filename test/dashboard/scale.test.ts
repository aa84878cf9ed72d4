/**
 * The dashboard with 1000 contexts (400 l2 on a bridge, 300 l3 and 300 socket on a host network), in headless
 * Chromium: the page is usable within seconds (every context in the table, the topology drawn with its networks
 * collapsed to one node per level, the counters live), the filter narrows the table, and opening the page does not
 * start an audit of 1000 contexts by itself.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type Browser, chromium, type Page } from "playwright-core";
import { callEngine } from "../../src/api/client.ts";
import { netctxOk } from "../utils/cli.ts";
import { type Dashboard, get, startDashboard } from "./dashboard-http.ts";

const SOCKET = join(process.env.NETCTX_STATE_DIR!, "netctx.sock");
const SCRATCH = process.env.NETCTX_TEST_SCRATCH!;
let dash: Dashboard;
let browser: Browser;
let page: Page;

before(async () => {
  netctxOk("network", "create", "wide", "--driver", "bridge", "--subnet", "10.96.0.0/20");
  netctxOk("network", "create", "shared", "--driver", "host", "--subnet", "10.97.0.0/20");
  dash = await startDashboard(8433);
  const started = Date.now();
  const plan = [
    ...Array.from({ length: 400 }, (_, i) => ({ name: `w${i}`, level: "l2", networks: ["wide"] })),
    ...Array.from({ length: 300 }, (_, i) => ({ name: `r${i}`, level: "l3", networks: ["shared"] })),
    ...Array.from({ length: 300 }, (_, i) => ({ name: `s${i}`, level: "socket", networks: ["shared"] })),
  ];
  for (const c of plan) await callEngine(SOCKET, "POST", "/v1/contexts", { ...c, ips: [] });
  console.log(`1000 contexts made in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
});

after(async () => {
  await browser?.close();
  await dash?.engine.stop();
});

test("1000 contexts: the page is usable within seconds and does not start an audit by itself", async () => {
  const auth = { authorization: `Bearer ${dash.token}` };
  const apiStarted = performance.now();
  const listed = await get(`${dash.base}/v1/contexts`, auth);
  const apiMs = performance.now() - apiStarted;
  assert.equal((JSON.parse(listed.text) as unknown[]).length, 1000);
  // What the page reads: the records (every 5 s) and one context's live facts (on click), in milliseconds.
  for (const [path, limitMs] of [
    ["/ui/contexts", 500],
    ["/ui/contexts/w7", 300],
    ["/v1/networks", 300],
    // What the live counters cost the engine each second while a page is open (70-250 ms here, by the machine's
    // load; api/stats-events.ts spaces the readings out beyond 200 ms, so the limit is the page's, not the budget's).
    ["/v1/stats", 1000],
  ] as const) {
    // The fastest of three: the first call pays for the JIT, and the machine is shared.
    let ms = Number.POSITIVE_INFINITY;
    let r = await get(`${dash.base}${path}`, auth);
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      r = await get(`${dash.base}${path}`, auth);
      ms = Math.min(ms, performance.now() - t0);
    }
    console.log(`GET ${path} at 1000: ${ms.toFixed(0)} ms`);
    assert.equal(r.status, 200);
    assert.ok(ms < limitMs, `${path}: ${ms.toFixed(0)} ms`);
  }

  const started = performance.now();
  await page.goto(dash.url);
  await page.waitForFunction(
    () => document.querySelectorAll("#contexts tbody tr").length === 1000,
    undefined,
    {
      timeout: 20_000,
    },
  );
  await page.locator("#topology canvas").first().waitFor();
  const pageMs = performance.now() - started;
  console.log(
    `GET /v1/contexts at 1000: ${apiMs.toFixed(0)} ms; page with 1000 rows: ${pageMs.toFixed(0)} ms`,
  );
  assert.ok(pageMs < 10_000, `${pageMs} ms`);
  assert.match((await page.textContent("#summary")) ?? "", /1000 contexts · 2 networks/);
  await page.locator("#live.on").waitFor({ timeout: 5000 });
  assert.equal(
    await page.textContent('#contexts tr[data-context="s299"] .connections'),
    "0",
    "counters at 1000",
  );

  await page.fill("#filter", "socket");
  const shown = await page.$$eval(
    "#contexts tbody tr",
    (rows) => rows.filter((r) => !(r as HTMLElement).hidden).length,
  );
  assert.equal(shown, 300);

  const audit = JSON.parse((await get(`${dash.base}/ui/audit`, auth)).text) as { state: string };
  assert.equal(audit.state, "never", "no audit of 1000 contexts started by opening the page");
  assert.match((await page.textContent("#audit-state")) ?? "", /not measured yet/);
  await page.screenshot({ path: join(SCRATCH, "scale.png") });
});
