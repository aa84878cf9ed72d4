/**
 * The dashboard in a real browser: headless Chromium (apt `chromium`) driven by playwright-core, against
 * `netctx serve --listen` on the test's loopback with a scene of one context per level. The page loads with the
 * token and not without it, shows the scene's contexts, a context's page, a counter that moves while traffic flows,
 * and the audit's row for each level with the evidence of a cell. Screenshots go to the test's scratch directory
 * (and to NETCTX_DASHBOARD_SHOTS when set: how docs/dashboard.png was made).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type Browser, chromium, type Page } from "playwright-core";
import { netctxJson, netctxOk } from "../utils/cli.ts";
import { contextNetns, inNetns } from "../utils/netns.ts";
import { type Dashboard, startDashboard } from "./dashboard-http.ts";

const SHOTS = join(process.env.NETCTX_TEST_SCRATCH!, "screenshots");
let dash: Dashboard;
let browser: Browser;
let page: Page;

async function shot(name: string): Promise<void> {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  const keep = process.env.NETCTX_DASHBOARD_SHOTS;
  if (keep) {
    mkdirSync(keep, { recursive: true });
    copyFileSync(path, join(keep, `${name}.png`));
  }
}

/**
 * `count` pings 10 ms apart from a context to its gateway, in the background. The gateway answers (the policy lets
 * nothing but web's port 5432 into db): 300 carry ~30 KB each way.
 */
function pingGateway(context: string, count: number): ChildProcess {
  const view = netctxJson<{ interfaces: { gateways: string[] }[] }>("inspect", context);
  const gateway = view.interfaces[0]!.gateways[0]!;
  const argv = inNetns(contextNetns(context), ["ping", "-q", "-c", String(count), "-i", "0.01", gateway]);
  return spawn(argv[0]!, argv.slice(1), { stdio: "ignore" });
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  netctxOk("network", "create", "front", "--driver", "bridge", "--subnet", "10.94.0.0/24");
  netctxOk("network", "create", "pool", "--driver", "host", "--subnet", "10.95.0.0/24");
  netctxOk("create", "web", "--level", "l2", "--network", "front", "--publish", "8080:80/tcp");
  netctxOk("create", "db", "--level", "l2", "--network", "front");
  netctxOk("create", "rt", "--level", "l3", "--network", "pool");
  netctxOk("create", "sock", "--level", "socket", "--network", "pool");
  netctxOk("policy", "add", "web-to-db", "--from", "web", "--to", "db", "--port", "5432/tcp");
  dash = await startDashboard(8432);
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
});

after(async () => {
  await browser?.close();
  await dash?.engine.stop();
});

test("without the token the page answers 401 and shows no data", async () => {
  const res = await page.goto(`${dash.base}/`);
  assert.equal(res?.status(), 401);
  const text = await page.textContent("body");
  assert.match(text ?? "", /a token is required/);
  for (const name of ["web", "db", "rt", "sock", "front", "pool"])
    assert.ok(!text?.includes(`"${name}`), name);
  const api = await page.goto(`${dash.base}/v1/contexts`);
  assert.equal(api?.status(), 401);
  await shot("no-token");
});

test("with the token the page shows the scene's contexts, coloured by level, and a context's page", async () => {
  const res = await page.goto(dash.url);
  assert.equal(res?.status(), 200);
  assert.equal(page.url(), `${dash.base}/`, "the token left the address bar");
  const cookies = await page.context().cookies();
  assert.deepEqual(
    cookies.map((c) => [c.name, c.httpOnly, c.sameSite]),
    [["netctx_token", true, "Strict"]],
  );
  for (const [name, level] of [
    ["web", "l2"],
    ["db", "l2"],
    ["rt", "l3"],
    ["sock", "socket"],
  ]) {
    const row = page.locator(`#contexts tr[data-context="${name}"]`);
    await row.waitFor({ timeout: 10_000 });
    assert.equal(await row.locator(".badge").textContent(), level);
  }
  assert.match((await page.textContent("#summary")) ?? "", /4 contexts · 2 networks/);
  assert.ok(await page.locator("#topology canvas").count(), "cytoscape drew the topology");

  await page.click('#contexts tr[data-context="web"]');
  await page.locator("#context-interfaces").waitFor();
  const web = netctxJson<{ addresses: string[] }>("inspect", "web");
  const facts = (await page.textContent("#context-page")) ?? "";
  assert.ok(facts.includes(web.addresses[0]!), facts);
  assert.match(facts, /8080:80\/tcp/);
  assert.match(facts, /web-to-db/);
  assert.equal(page.url(), `${dash.base}/#context/web`);
});

test("a counter moves while the test sends traffic", async () => {
  await page.locator("#live.on").waitFor({ timeout: 5000 });
  const cell = page.locator('#contexts tr[data-context="web"] .rx-bytes');
  const before = Number(await cell.textContent());
  const traffic = pingGateway("web", 300);
  try {
    await page.waitForFunction(
      ([sel, was]) => Number(document.querySelector(sel as string)?.textContent) > (was as number) + 10_000,
      ['#contexts tr[data-context="web"] .rx-bytes', before],
      { timeout: 10_000 },
    );
  } finally {
    traffic.kill();
  }
  assert.ok(Number(await cell.textContent()) > before);
  assert.match((await page.textContent('#contexts tr[data-context="web"] .rx-rate')) ?? "", /\/s$/);
  // One update a second: a second stream opened for 3.5 s gets a reading at once and then about three.
  const events = await page.evaluate(
    () =>
      new Promise<number[]>((resolve) => {
        const stream = new EventSource("/ui/events");
        const at: number[] = [];
        stream.addEventListener("stats", (e) =>
          at.push((JSON.parse((e as MessageEvent<string>).data) as { at: number }).at),
        );
        setTimeout(() => {
          stream.close();
          resolve(at);
        }, 3500);
      }),
  );
  assert.ok(events.length >= 3 && events.length <= 5, `${events.length} updates in 3.5 s`);
  // The first reading is the new stream's own; the shared ticks follow a second apart.
  const ticks = events.slice(1);
  const gaps = ticks.slice(1).map((t, i) => t - ticks[i]!);
  assert.ok(
    gaps.every((g) => g >= 700 && g <= 1600),
    `gaps ${gaps.join(", ")} ms`,
  );
  // web's page (opened by the test before) follows the counters too.
  assert.match((await page.textContent("#context-traffic")) ?? "", /^rx [1-9][\d.]* (B|KiB)/);
});

test("the audit table shows each level's row, and a cell's evidence on click", async () => {
  for (const level of ["l2", "l3", "socket"])
    await page.locator(`#audit-levels tr[data-level="${level}"]`).waitFor({ timeout: 90_000 });
  const row = async (level: string) =>
    page.$$eval(`#audit-levels tr[data-level="${level}"] td.cell`, (tds) => tds.map((td) => td.textContent));
  // The seed's table as measured here (README "Today's kernel vs the 2006 table": l2's routing cache is its own).
  assert.deepEqual(await row("l2"), ["v", "v", "v", "v"]);
  assert.deepEqual(await row("l3"), ["-", "i", "-", "i"]);
  assert.deepEqual(await row("socket"), ["-", "-", "-", "i"]);
  await page.click('#audit-levels td[data-cell="socket:sockets"]');
  await page.locator("#audit-evidence pre.evidence").first().waitFor();
  const evidence = (await page.textContent("#audit-evidence")) ?? "";
  assert.match(evidence, /sock \(socket\): measured i, expected i/);
  await page.click('#contexts tr[data-context="web"]');
  await page.locator("#context-interfaces").waitFor();
  // The picture for the README, with traffic flowing.
  const traffic = pingGateway("web", 300);
  try {
    await page.waitForTimeout(2500);
    await shot("dashboard");
  } finally {
    traffic.kill();
  }
});

test("the reach section measures who reaches whom against the policies: web reaches db's port, nobody else does", async () => {
  await page.click("#reach-run");
  await page.locator('#reach-cells tr[data-reach="web>db:tcp/5432"]').waitFor({ timeout: 120_000 });
  await page.waitForFunction(
    () => !document.querySelector("#reach-state")?.textContent?.includes("measuring"),
  );
  const state = (await page.textContent("#reach-state")) ?? "";
  assert.match(state, /every cell as the policies say/, state);
  const cells = await page.$$eval("#reach-cells tr[data-reach]", (trs) =>
    trs.map((tr) => [
      tr.getAttribute("data-reach"),
      ...[...tr.querySelectorAll("td")].map((td) => td.textContent),
    ]),
  );
  const cell = (key: string) => cells.find((c) => c[0] === key);
  assert.deepEqual(cell("web>db:tcp/5432")?.slice(4, 6), ["allowed", "allowed"], JSON.stringify(cells));
  // db is selected by web-to-db: from the l3 context its port is blocked, by the policies and on the wire.
  assert.deepEqual(cell("rt>db:tcp/5432")?.slice(4, 6), ["blocked", "blocked"], JSON.stringify(cells));
  await shot("reach");
});
