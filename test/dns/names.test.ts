/**
 * Names on the real kernel, through `netctx serve` (issue 20): contexts resolve each other by name and alias with
 * busybox nslookup and glibc's getent run inside them, on IPv4 and IPv6 gateways; a context on another network gets
 * NXDOMAIN; PTR works; other names reach a stub upstream in an "outside" namespace; l3 and socket contexts are
 * served on their host network's gateway; a `--no-dns` network has no server; a name answers within 100 ms of
 * `create` returning and is gone within 100 ms of `rm`.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { insideSandbox } from "../../src/sandbox.ts";
import { execScript, netctx, netctxJson, netctxOk, type RunningEngine, startEngine } from "../utils/cli.ts";
import { dataOf, query } from "../utils/dns-client.ts";
import { startDnsStub } from "../utils/dns-stub.ts";
import type { LineProcess } from "../utils/line-process.ts";
import { addVethNetns, contextNetns, delVethNetns, inNetns } from "../utils/netns.ts";
import { sleep, waitFor } from "../utils/wait.ts";

const scratch = process.env.NETCTX_TEST_SCRATCH ?? "/tmp";
const resolvConf = join(scratch, "upstream-resolv.conf");
const OUTSIDE = { name: "outside", hostIfname: "outside-h" };
const STUB = "192.0.2.53";

let engine: RunningEngine;
let stub: LineProcess;

/** Run argv inside l2 context `name`'s netns; stdout and stderr together, and the exit code. */
function inContext(name: string, argv: string[]): { code: number | null; out: string } {
  const [cmd, ...args] = inNetns(contextNetns(name), argv);
  const r = spawnSync(cmd!, args, { encoding: "utf8", timeout: 20_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

const nslookup = (context: string, name: string, server: string) =>
  inContext(context, ["busybox", "nslookup", name, server]);

const addressOf = (name: string) =>
  netctxJson<{ addresses: string[] }>("inspect", name).addresses.map((a) => a.split("/")[0]!);

/**
 * The host's resolv.conf for this file: a bind mount in the test's own mount namespace (the runner's sandbox makes it
 * private), with search domains and options a context's resolv.conf keeps.
 */
const HOST_RESOLV_CONF = "nameserver 10.255.255.53\nsearch corp.example\noptions edns0 timeout:2\n";

before(async () => {
  assert.ok(insideSandbox(process.env), "the host's resolv.conf is only replaced inside the test sandbox");
  const hostConf = join(scratch, "host-resolv.conf");
  writeFileSync(hostConf, HOST_RESOLV_CONF);
  assert.equal(spawnSync("mount", ["--bind", hostConf, "/etc/resolv.conf"]).status, 0);
  addVethNetns({ ...OUTSIDE, hostAddresses: ["192.0.2.254/24"], addresses: [`${STUB}/24`] });
  stub = await startDnsStub(OUTSIDE.name, STUB);
  writeFileSync(resolvConf, `nameserver ${STUB}\n`);
  engine = await startEngine({ args: ["--dns-resolv-conf", resolvConf] });
  netctxOk("network", "create", "front", "--subnet", "10.60.0.0/24", "--subnet", "fd60::/64");
  netctxOk("network", "create", "back", "--subnet", "10.61.0.0/24");
  netctxOk("network", "create", "quiet", "--subnet", "10.62.0.0/24", "--no-dns");
  netctxOk("network", "create", "hn", "--driver", "host", "--subnet", "10.63.0.0/24");
  netctxOk("create", "web", "--level", "l2", "--network", "front", "--alias", "www", "--alias", "api");
  netctxOk("create", "db", "--level", "l2", "--network", "front");
  netctxOk("create", "other", "--level", "l2", "--network", "back");
  netctxOk("create", "mute", "--level", "l2", "--network", "quiet");
  netctxOk("create", "l3c", "--level", "l3", "--network", "hn", "--alias", "svc");
  netctxOk("create", "sockc", "--level", "socket", "--network", "hn");
});

after(async () => {
  netctx("rm", "web", "db", "other", "mute", "l3c", "sockc");
  await engine?.stop();
  await stub?.stop();
  delVethNetns(OUTSIDE);
});

test("two l2 contexts resolve each other by name, alias and NAME.NETWORK.DOMAIN (busybox nslookup)", () => {
  const [web4, web6] = addressOf("web");
  const www = nslookup("db", "www", "10.60.0.1");
  assert.equal(www.code, 0, www.out);
  assert.ok(www.out.includes(web4!) && www.out.includes(web6!), www.out);
  const db = nslookup("web", "db.front.netctx", "10.60.0.1");
  assert.equal(db.code, 0, db.out);
  assert.ok(db.out.includes(addressOf("db")[0]!), db.out);
  // The IPv6 gateway serves the same names.
  const v6 = nslookup("db", "api", "fd60::1");
  assert.equal(v6.code, 0, v6.out);
  assert.ok(v6.out.includes(web4!), v6.out);
});

test("netctx exec: an l2 context's /etc/resolv.conf names its gateway, and glibc resolves through it", async () => {
  const r = await execScript(
    "db",
    "cat /etc/resolv.conf; getent ahostsv4 www && getent hosts web.front.netctx && getent hosts db; " +
      "echo changed > /etc/resolv.conf && echo writable",
  );
  // podman's shape for aardvark-dns: the gateways, the network's domain searched first, the host's options kept.
  assert.match(
    r.stdout,
    /^nameserver 10\.60\.0\.1\nnameserver fd60::1\nsearch front\.netctx corp\.example\noptions edns0 timeout:2$/m,
  );
  assert.doesNotMatch(r.stdout, /nameserver 10\.255\./, "the host's nameservers are not listed");
  const [web4, web6] = addressOf("web");
  assert.match(r.stdout, new RegExp(`^${web4!.replace(/\./g, "\\.")}\\s+STREAM www`, "m"));
  assert.match(r.stdout, new RegExp(`^${web6}\\s+web\\.front\\.netctx`, "m"));
  // A bare name through the search list: glibc asks db.front.netctx first.
  assert.match(r.stdout, /\s+db\.front\.netctx$/m);
  assert.doesNotMatch(r.stdout, /writable/, "the context's resolv.conf is read-only");
});

test("netctx exec: a context on a --no-dns network keeps the host's resolv.conf", async () => {
  const r = await execScript("mute", "cat /etc/resolv.conf");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, HOST_RESOLV_CONF);
});

test("a context on another network gets NXDOMAIN for them, by every name", () => {
  for (const name of ["web", "www", "db.front.netctx"]) {
    const r = nslookup("other", name, "10.61.0.1");
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /NXDOMAIN/, `${name}: ${r.out}`);
  }
  // Asking front's gateway from back changes nothing: the view is the sender's.
  const r = nslookup("other", "web", "10.60.0.1");
  assert.match(r.out, /NXDOMAIN/, r.out);
});

test("PTR: a context's address gives NAME.NETWORK.DOMAIN", () => {
  const [web4, web6] = addressOf("web");
  for (const address of [web4!, web6!]) {
    const r = nslookup("db", address, "10.60.0.1");
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /name = web\.front\.netctx/, r.out);
  }
});

test("a name not ours is forwarded to the upstream of resolv.conf (a stub in an outside namespace)", async () => {
  const r = nslookup("db", "far.example", "10.60.0.1");
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /203\.0\.113\.9/, r.out);
  // The stub's lines arrive through this thread's event loop, which spawnSync held up.
  await waitFor(() => stub.lines.some((l) => l.startsWith("query far.example")));
  assert.ok(
    stub.lines.some((l) => l.startsWith("query far.example")),
    stub.lines.join("\n"),
  );
  // A context's name never leaks to the upstream, not even from a network where it is not served.
  nslookup("other", "web", "10.61.0.1");
  await sleep(200);
  assert.ok(!stub.lines.some((l) => /^query (web|www)\b/.test(l)), stub.lines.join("\n"));
});

test("l3 and socket contexts are served on their host network's gateway", async () => {
  const r = await execScript(
    "sockc",
    "busybox nslookup svc 10.63.0.1 && busybox nslookup l3c.hn.netctx 10.63.0.1",
  );
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.ok(r.stdout.includes(addressOf("l3c")[0]!), r.stdout);
  const back = await execScript("l3c", "busybox nslookup sockc 10.63.0.1");
  assert.equal(back.code, 0, back.stdout + back.stderr);
  assert.ok(back.stdout.includes(addressOf("sockc")[0]!), back.stdout);
  const leak = await execScript("sockc", "busybox nslookup web 10.63.0.1");
  assert.match(leak.stdout + leak.stderr, /NXDOMAIN/);
  // Their exec path names the host network's gateway too, so glibc finds the names without a server argument.
  for (const [ctx, peer] of [
    ["l3c", "sockc"],
    ["sockc", "svc"],
  ] as const) {
    const own = await execScript(ctx, `cat /etc/resolv.conf; getent hosts ${peer}`);
    assert.equal(own.code, 0, own.stdout + own.stderr);
    assert.match(own.stdout, /^nameserver 10\.63\.0\.1\nsearch hn\.netctx corp\.example$/m);
    assert.ok(own.stdout.includes(addressOf(peer === "svc" ? "l3c" : peer)[0]!), own.stdout);
  }
});

test("a --no-dns network has no server on its gateway, and its contexts no names", async () => {
  assert.equal(await query("10.62.0.1", "mute", { timeoutMs: 500 }), undefined);
  assert.equal(await query("10.62.0.1", "mute", { tcp: true, timeoutMs: 500 }), undefined);
  const r = netctx("resolve", "mute");
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^error: name "mute" does not exist/);
});

test("netctx resolve asks the engine: addresses per network, and the names of an address", () => {
  const [web4, web6] = addressOf("web");
  assert.equal(netctxOk("resolve", "www").trim(), `${web4}\tfront\n${web6}\tfront`);
  assert.equal(netctxOk("resolve", web4!).trim(), "web.front.netctx");
  const r = netctx("resolve", "www", "--network", "back");
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^error: .*www on network back/);
});

/** The time from `since` until `ask` gives `want`, polling as fast as the answers come. */
async function timeUntil(since: number, ask: () => Promise<boolean>): Promise<number> {
  while (!(await ask())) if (performance.now() - since > 2000) break;
  return performance.now() - since;
}

test("a name answers within 100 ms of create returning and is gone within 100 ms of rm", async () => {
  // From the host: the query leaves with the gateway's address, a sender inside front.
  netctxOk("create", "fresh", "--level", "l2", "--network", "front", "--alias", "new");
  const created = performance.now();
  const appeared = await timeUntil(
    created,
    async () => dataOf(await query("10.60.0.1", "new", { timeoutMs: 100 })).length > 0,
  );
  netctxOk("rm", "fresh");
  const removed = performance.now();
  const vanished = await timeUntil(
    removed,
    async () => (await query("10.60.0.1", "new", { timeoutMs: 100 }))?.answers?.length === 0,
  );
  console.log(
    `# name answered ${appeared.toFixed(1)} ms after create, gone ${vanished.toFixed(1)} ms after rm`,
  );
  assert.ok(appeared < 100, `answered only after ${appeared} ms`);
  assert.ok(vanished < 100, `still answered ${vanished} ms after rm`);
});

test("bad input: a bad alias, domain or network is one line naming the field, and changes nothing", () => {
  const before = netctxOk("ls", "--json");
  const alias = netctx("create", "bad", "--level", "l2", "--network", "front", "--alias", "no spaces");
  assert.notEqual(alias.code, 0);
  assert.match(alias.stderr, /^error: aliases\[0\]: is not a DNS name/);
  assert.equal(alias.stderr.trim().split("\n").length, 1);
  const long = netctx("create", "bad", "--level", "l2", "--network", "front", "--alias", `${"a".repeat(64)}`);
  assert.match(long.stderr, /^error: aliases\[0\]: is not a DNS name/);
  assert.equal(netctxOk("ls", "--json"), before);
  const domain = netctx("serve", "--dns-domain", "bad..domain", "--socket", join(scratch, "other.sock"));
  assert.notEqual(domain.code, 0);
  assert.match(domain.stderr, /^error: dns-domain: "bad\.\.domain" is not a DNS name/);
  const net = netctx("resolve", "web", "--network", "nosuch");
  assert.notEqual(net.code, 0);
  assert.match(net.stderr, /^error: /);
});

test("a restarted engine serves the names already in the store from its start", async () => {
  await engine.stop();
  // No engine, no server on the gateway: exec keeps the host's resolvers rather than name a silent one.
  const without = await execScript("db", "cat /etc/resolv.conf");
  assert.equal(without.stdout, HOST_RESOLV_CONF);
  engine = await startEngine({ args: ["--dns-resolv-conf", resolvConf] });
  assert.match(engine.log(), /serving on/, "the engine came up");
  const r = nslookup("db", "www", "10.60.0.1");
  assert.equal(r.code, 0, r.out);
  assert.ok(r.out.includes(addressOf("web")[0]!), r.out);
});
