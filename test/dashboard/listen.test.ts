/**
 * serve --listen: bad addresses and token files are refused before anything listens; the listener answers nothing
 * without the token (401, no data), takes it from /?token= into an HttpOnly SameSite=Strict cookie or from a Bearer
 * header, and is read-only: a change over TCP is refused and changes nothing.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { netctx, netctxOk } from "../utils/cli.ts";
import { type Dashboard, get, startDashboard } from "./dashboard-http.ts";

const SCRATCH = process.env.NETCTX_TEST_SCRATCH!;
const SOCKET = join(process.env.NETCTX_STATE_DIR!, "netctx.sock");

/** TCP listeners in this test's namespace, as `ss` prints them. */
function listeners(): string {
  return spawnSync("ss", ["-Hltn"], { encoding: "utf8" }).stdout.trim();
}

function tokenFile(name: string, content: string, mode = 0o600): string {
  const path = join(SCRATCH, name);
  writeFileSync(path, content);
  chmodSync(path, mode);
  return path;
}

const GOOD_TOKEN = "s3cret-token-0123456789abcdef";

test("bad --listen and --token-file values: one line naming the field, non-zero exit, nothing listening", () => {
  const cases: [string[], RegExp][] = [
    [["--listen", "300.1.1.1:8080"], /^error: listen: "300\.1\.1\.1:8080" is not ADDR:PORT/],
    [["--listen", "127.0.0.1"], /^error: listen: "127\.0\.0\.1" is not ADDR:PORT/],
    [["--listen", "localhost:8080"], /^error: listen: "localhost:8080" is not ADDR:PORT/],
    [["--listen", "127.0.0.1:0"], /^error: listen: "127\.0\.0\.1:0" has no port 1-65535/],
    [["--listen", "127.0.0.1:65536"], /^error: listen: "127\.0\.0\.1:65536" has no port/],
    [["--listen", "[::1]:x"], /^error: listen: /],
    [["--listen", "0.0.0.0:8080"], /^error: token-file: --listen 0\.0\.0\.0:8080 is not a loopback address/],
    [["--listen", "[::]:8080"], /^error: token-file: --listen \[::\]:8080 is not a loopback address/],
    [
      ["--listen", "0.0.0.0:8080", "--token-file", join(SCRATCH, "absent")],
      /^error: token-file: .*absent cannot be read: ENOENT/,
    ],
    [
      ["--listen", "0.0.0.0:8080", "--token-file", tokenFile("empty", "\n")],
      /^error: token-file: .*empty is empty/,
    ],
    [["--listen", "0.0.0.0:8080", "--token-file", SCRATCH], /^error: token-file: .* cannot be read: EISDIR/],
    [
      ["--listen", "0.0.0.0:8080", "--token-file", tokenFile("short", "abc\n")],
      /^error: token-file: .*does not hold one token/,
    ],
    [
      ["--listen", "0.0.0.0:8080", "--token-file", tokenFile("shared", `${GOOD_TOKEN}\n`, 0o644)],
      /^error: token-file: .*is readable by other users/,
    ],
    [["--token-file", tokenFile("alone", `${GOOD_TOKEN}\n`)], /^error: token-file: only with --listen/],
    // A good value the kernel refuses: an address no device here holds. The unix socket goes again.
    [
      ["--listen", "10.200.0.1:8080", "--token-file", tokenFile("good", `${GOOD_TOKEN}\n`)],
      /^error: listen: cannot listen on 10\.200\.0\.1:8080: EADDRNOTAVAIL/,
    ],
  ];
  for (const [args, expected] of cases) {
    const r = netctx("serve", "--no-dns", ...args);
    assert.notEqual(r.code, 0, `${args.join(" ")} was accepted`);
    assert.match(r.stderr, expected, args.join(" "));
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.equal(listeners(), "", `${args.join(" ")} left a listener`);
    assert.equal(existsSync(SOCKET), false, `${args.join(" ")} left the engine's socket`);
  }
});

let dash: Dashboard | undefined;
after(() => dash?.engine.stop());

test("the listener answers nothing without the token, and changes nothing with it", async () => {
  netctxOk("network", "create", "front", "--driver", "bridge", "--subnet", "10.91.0.0/24");
  netctxOk("create", "web", "--level", "l2", "--network", "front");
  dash = await startDashboard(8431, ["--no-dns"]);
  assert.equal(dash.stderr().match(/dashboard: http:/g)?.length, 1, "the URL is printed once");
  assert.match(dash.url, /^http:\/\/127\.0\.0\.1:8431\/\?token=[A-Za-z0-9_-]{43}$/);
  const { base, token } = dash;

  // No token, a wrong one, a wrong cookie: 401 and not a byte of the engine's data.
  for (const [path, headers] of [
    ["/", {}],
    ["/v1/contexts", {}],
    ["/assets/dashboard.js", {}],
    ["/ui/events", {}],
    ["/ui/audit", {}],
    ["/v1/contexts", { authorization: `Bearer ${token}x` }],
    ["/v1/contexts", { cookie: `netctx_token=${token.slice(0, -1)}` }],
    [`/?token=${token}x`, {}],
  ] as [string, Record<string, string>][]) {
    const r = await get(base + path, headers);
    assert.equal(r.status, 401, `${path} ${JSON.stringify(headers)}`);
    assert.doesNotMatch(r.text, /web|front|10\.91/, "no data in a refusal");
  }

  // A large upload is drained, not kept: 64 MB sent without a token leave the engine's peak memory where it was.
  const peak = () =>
    Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${dash!.engine.child.pid}/status`, "utf8"))?.[1]);
  const peakBefore = peak();
  const upload = await get(`${base}/v1/contexts`, {}, "POST", "x".repeat(64 << 20));
  assert.equal(upload.status, 401);
  assert.ok(
    peak() - peakBefore < 16 << 10,
    `peak memory grew ${((peak() - peakBefore) / 1024).toFixed(0)} MB`,
  );

  // The token in the URL becomes a cookie the page's scripts cannot read, and leaves the address bar.
  const login = await get(`${base}/?token=${token}`);
  assert.equal(login.status, 303);
  assert.equal(login.headers.get("location"), "/");
  const cookie = login.headers.get("set-cookie") ?? "";
  assert.match(cookie, /^netctx_token=[^;]+; Path=\/; HttpOnly; SameSite=Strict$/);
  const withCookie = { cookie: cookie.split(";")[0]! };
  const page = await get(`${base}/`, withCookie);
  assert.equal(page.status, 200);
  assert.match(page.text, /<title>netctx dashboard<\/title>/);
  assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'self'/);
  const contexts = await get(`${base}/v1/contexts`, withCookie);
  assert.equal(contexts.status, 200);
  assert.deepEqual(
    (JSON.parse(contexts.text) as { name: string }[]).map((c) => c.name),
    ["web"],
  );
  const bearer = await get(`${base}/v1/networks/front`, { authorization: `Bearer ${token}` });
  assert.equal(bearer.status, 200);
  assert.equal((JSON.parse(bearer.text) as { name: string }).name, "front");

  // Prometheus scrapes through the listener with the token, in its own text format; without the token, nothing.
  const scrape = await get(`${base}/metrics`, { authorization: `Bearer ${token}` });
  assert.equal(scrape.status, 200);
  assert.match(scrape.headers.get("content-type") ?? "", /^text\/plain/);
  assert.match(scrape.text, /^netctx_\w+\{[^}]*context="web"/m);
  assert.equal((await get(`${base}/metrics`)).status, 401);

  // Read-only: with the token, a create or a remove over TCP is refused and the records stay as they were.
  const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  const create = await get(
    `${base}/v1/contexts`,
    auth,
    "POST",
    JSON.stringify({ name: "evil", level: "l2", networks: ["front"], ips: [] }),
  );
  assert.equal(create.status, 405, create.text);
  assert.match(create.text, /read-only/);
  const remove = await get(`${base}/v1/contexts/web`, auth, "DELETE");
  assert.equal(remove.status, 405);
  const cniAdd = await get(`${base}/v1/cni`, { ...auth, "x-cni-command": "ADD" }, "POST", "{}");
  assert.equal(cniAdd.status, 405);
  assert.deepEqual(
    (JSON.parse(netctxOk("ls", "--json")) as { name: string }[]).map((c) => c.name),
    ["web"],
  );
  assert.match(dash.engine.log(), /dashboard: GET \/v1\/contexts from 127\.0\.0\.1 -> 401/);
  assert.ok(listeners().includes("127.0.0.1:8431"));
});

test("an IPv6 loopback listener prints its URL with brackets and answers there", async () => {
  await dash?.engine.stop();
  dash = await startDashboard(8435, ["--no-dns"], "[::1]");
  assert.match(dash.url, /^http:\/\/\[::1\]:8435\/\?token=[A-Za-z0-9_-]{43}$/);
  const r = await get(`http://[::1]:8435/v1/networks`, { authorization: `Bearer ${dash.token}` });
  assert.equal(r.status, 200);
  assert.ok(listeners().includes("[::1]:8435"), listeners());
});
