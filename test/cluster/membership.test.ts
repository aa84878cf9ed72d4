/**
 * Cluster membership (issue 18): three hosts with one engine each and a 3-member etcd cluster among them
 * (test/utils/cluster.ts). Node records live under a lease (--node-ttl 3 here): a killed engine vanishes from its
 * peers' view within TTL + 2 s, etcd outages never stop an engine, and it is listed again when etcd answers.
 * A fourth host runs an etcd that requires TLS client certificates made here with openssl.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { MemberStatus } from "../../src/cluster/member.ts";
import type { CliResult } from "../utils/cli.ts";
import { startCluster, stopCluster, type TestCluster, type TestHost } from "../utils/cluster.ts";
import { sleep } from "../utils/wait.ts";

const TTL = 3;
let c: TestCluster;

before(async () => {
  c = await startCluster({ hosts: 4, etcdHosts: [1, 2, 3] });
  // No --underlay: each engine must find its own from the route toward etcd.
  await Promise.all([1, 2, 3].map((i) => c.host(i).startEngine("--node-ttl", String(TTL))));
});
after(() => stopCluster());

async function status(host: TestHost, ...extra: string[]): Promise<MemberStatus> {
  const r = await host.netctx("cluster", "status", "--json", ...extra);
  assert.equal(r.code, 0, `cluster status on ${host.name}: ${r.stderr}`);
  return JSON.parse(r.stdout) as MemberStatus;
}

async function names(host: TestHost): Promise<string[]> {
  return (await status(host)).nodes.map((n) => n.name).sort();
}

/** Polls `read` until it returns true; the milliseconds it took, or throws after timeoutMs. */
async function until(what: string, read: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await read()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(200);
  }
}

function oneLine(r: CliResult): string {
  assert.notEqual(r.code, 0);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line, got: ${r.stderr}`);
  return lines[0]!;
}

async function timed(p: Promise<CliResult>): Promise<[CliResult, number]> {
  const started = Date.now();
  const r = await p;
  return [r, Date.now() - started];
}

test("every engine is listed in every host's cluster status, with the underlay address toward etcd", async () => {
  await until("three nodes registered", async () => (await names(c.host(1))).length === 3, 10_000);
  for (const i of [1, 2, 3]) {
    const s = await status(c.host(i));
    assert.equal(s.self, `h${i}`);
    assert.equal(s.member.registered, true);
    assert.deepEqual(
      s.nodes.map((n) => [n.name, n.underlay, n.ttl, n.vtepMac, n.blocks.length, n.contexts]),
      [1, 2, 3].map((j) => [`h${j}`, `192.168.77.${j}`, TTL, "", 0, 0]),
    );
    for (const n of s.nodes) assert.ok(n.ttlLeft !== undefined && n.ttlLeft <= TTL, JSON.stringify(n));
  }
  // The human table names this node.
  const table = await c.host(2).netctx("cluster", "status");
  assert.match(table.stdout, /^h2 \(this node\)\s+192\.168\.77\.2\s+0\s+-/m);
});

test("an engine publishes its context count", async () => {
  const h1 = c.host(1);
  const net = await h1.netctx("network", "create", "lan", "--driver", "bridge", "--subnet", "10.91.0.0/24");
  assert.equal(net.code, 0, net.stderr);
  assert.equal((await h1.netctx("create", "ctx1", "--level", "l2", "--network", "lan")).code, 0);
  await until(
    "h1 lists 1 context",
    async () => (await status(c.host(3))).nodes.find((n) => n.name === "h1")?.contexts === 1,
    TTL * 1000,
  );
});

test("kill -9 of an engine: gone from its peers within TTL + 2 s; restarted, it is back", async () => {
  const h3 = c.host(3);
  await h3.engine!.kill9();
  const gone = await until("h3 gone", async () => !(await names(c.host(1))).includes("h3"), (TTL + 2) * 1000);
  assert.ok(gone <= (TTL + 2) * 1000, `${gone} ms`);
  assert.deepEqual(await names(c.host(2)), ["h1", "h2"]);
  await h3.startEngine("--node-ttl", String(TTL));
  await until("h3 back", async () => (await names(c.host(1))).includes("h3"), 5000);
  assert.deepEqual(await names(h3), ["h1", "h2", "h3"]);
});

test("one etcd member stopped: status works and leases are renewed through the others", async () => {
  await c.stopEtcd(1);
  // Longer than a TTL: renewals must have gone to the two members left.
  await sleep((TTL + 1) * 1000);
  for (const i of [1, 2, 3])
    assert.deepEqual(
      await names(c.host(i)),
      ["h1", "h2", "h3"],
      [1, 2, 3].map((j) => c.host(j).engine!.log()).join("\n"),
    );
  await c.startEtcd(1);
  await c.etcdHealthy();
});

test("all etcd members stopped: status fails within 5 s in one line, engines keep serving; etcd back: listed again", async () => {
  const pids = [1, 2, 3].map((i) => c.host(i).engine!.pid);
  await Promise.all([1, 2, 3].map((i) => c.stopEtcd(i)));
  const [viaEngine, ms] = await timed(c.host(1).netctx("cluster", "status"));
  assert.match(oneLine(viaEngine), /^error: etcd at http:\/\/192\.168\.77\.1:2379,.*: /);
  assert.ok(ms < 5000, `${ms} ms`);
  const [direct, directMs] = await timed(c.host(2).netctx("cluster", "status", "--etcd", c.etcdUrls));
  assert.match(oneLine(direct), /^error: etcd at .*unreachable/);
  assert.ok(directMs < 5000, `${directMs} ms`);
  // Local work goes on through the engine, which says why it is not renewing.
  const ls = await c.host(1).netctx("network", "ls", "--json");
  assert.equal(ls.code, 0, ls.stderr);
  await sleep((TTL + 1) * 1000);
  for (const i of [1, 2, 3]) {
    assert.equal(c.host(i).engine!.exited(), false, `engine of h${i} still runs`);
    assert.match(c.host(i).engine!.log(), /cluster: etcd at .* not renewed, retrying/);
  }
  await Promise.all([1, 2, 3].map((i) => c.startEtcd(i)));
  await c.etcdHealthy();
  await until(
    "all three registered again",
    async () => {
      const s = await status(c.host(1));
      return s.nodes.length === 3 && s.member.registered;
    },
    12_000,
  );
  for (const i of [1, 2, 3]) {
    assert.equal(c.host(i).engine!.pid, pids[i - 1], "the same engine, not a restart");
    // Each engine's etcd client tries a member that failed again only after a few seconds of its own.
    await until(
      `h${i} registered, by its own engine`,
      async () => (await status(c.host(i)).catch(() => undefined))?.member.registered === true,
      12_000,
    );
    assert.match(c.host(i).engine!.log(), /cluster: etcd answers again/);
  }
});

test("cluster forget: the record and the node's blocks go at once; a live engine registers again", async () => {
  // etcd's client waits a few seconds before it tries a member that failed again (the previous test stopped them all).
  await until(
    "h1's engine writes to etcd again",
    async () => (await status(c.host(1))).member.registered,
    12_000,
  );
  const block = JSON.stringify({
    node: "ghost",
    network: "ov",
    cidr: "10.88.3.0/24",
    since: "2026-01-01T00:00:00Z",
  });
  const etcdctl = (...args: string[]) =>
    spawnSync("etcdctl", ["--endpoints", c.etcdUrls, ...args], { encoding: "utf8" });
  assert.equal(etcdctl("put", "/netctx/v1/blocks/ov/10.88.3.0_24", block).status, 0);
  const f = await c.host(1).netctx("cluster", "forget", "ghost", "--json");
  assert.equal(f.code, 0, f.stderr);
  assert.deepEqual(JSON.parse(f.stdout).blocks, [{ network: "ov", cidr: "10.88.3.0/24" }]);
  assert.equal(etcdctl("get", "--prefix", "/netctx/v1/blocks/").stdout, "");
  assert.match(oneLine(await c.host(1).netctx("cluster", "forget", "ghost")), /node "ghost" does not exist/);
  // h2 runs: forgetting it revokes its lease, and its engine notices and registers anew.
  const before = (await status(c.host(2))).member.registrations;
  // (Not checked gone in between: its engine may register again before a status call of a busy host returns.)
  assert.equal((await c.host(1).netctx("cluster", "forget", "h2")).code, 0);
  await until("h2 registered again", async () => (await names(c.host(1))).includes("h2"), TTL * 1000 + 2000);
  assert.equal((await status(c.host(2))).member.registrations, before + 1);
  assert.match(c.host(2).engine!.log(), /lease \d+ of node h2 is gone/);
});

/** CA, a server certificate for 192.168.77.4 and a client certificate, made with openssl (EC keys: fast). */
function makeCertificates(dir: string): void {
  const ssl = (...args: string[]) => {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    assert.equal(r.status, 0, `openssl ${args.join(" ")}: ${r.stderr}`);
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  ssl(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=netctx test CA",
  );
  writeFileSync(join(dir, "server.ext"), "subjectAltName=IP:192.168.77.4\nextendedKeyUsage=serverAuth\n");
  writeFileSync(join(dir, "client.ext"), "extendedKeyUsage=clientAuth\n");
  for (const who of ["server", "client"]) {
    ssl("req", ...ec, "-keyout", `${who}.key`, "-out", `${who}.csr`, "-subj", `/CN=netctx ${who}`);
    ssl(
      "x509",
      "-req",
      "-in",
      `${who}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${who}.pem`,
      "-days",
      "1",
      "-extfile",
      `${who}.ext`,
    );
  }
}

test("TLS: an engine with a client certificate registers; without one, one clear line", async () => {
  const dir = c.scratch;
  makeCertificates(dir);
  const h4 = c.host(4);
  const url = "https://192.168.77.4:2379";
  const log = openSync(join(dir, "tls-etcd.log"), "a");
  const etcd = spawn(
    "nsenter",
    h4
      .argv([
        "etcd",
        "--name",
        "t4",
        "--data-dir",
        join(dir, "t4.etcd"),
        "--listen-client-urls",
        url,
        "--advertise-client-urls",
        url,
        "--listen-peer-urls",
        "http://192.168.77.4:2380",
        "--initial-advertise-peer-urls",
        "http://192.168.77.4:2380",
        "--initial-cluster",
        "t4=http://192.168.77.4:2380",
        "--cert-file",
        join(dir, "server.pem"),
        "--key-file",
        join(dir, "server.key"),
        "--trusted-ca-file",
        join(dir, "ca.pem"),
        "--client-cert-auth",
      ])
      .slice(1),
    { stdio: ["ignore", log, log] },
  );
  c.adopt(etcd);
  const tls = [
    "--etcd-cacert",
    join(dir, "ca.pem"),
    "--etcd-cert",
    join(dir, "client.pem"),
    "--etcd-key",
    join(dir, "client.key"),
  ];
  await h4.startEngine("--etcd", url, "--node-ttl", String(TTL), ...tls);
  await until(
    "h4 registered over TLS",
    async () => {
      const s = await status(h4);
      return s.member.registered && s.nodes.some((n) => n.name === "h4" && n.underlay === "192.168.77.4");
    },
    10_000,
  );
  // The CLI straight to etcd, with the same files.
  const direct = await status(h4, "--etcd", url, ...tls);
  assert.deepEqual(
    direct.nodes.map((n) => n.name),
    ["h4"],
  );
  // Without the client certificate etcd refuses the handshake: one line, in well under 5 s.
  const [refused, ms] = await timed(
    h4.netctx("cluster", "status", "--etcd", url, "--etcd-cacert", join(dir, "ca.pem")),
  );
  assert.match(
    oneLine(refused),
    /^error: etcd at https:\/\/192\.168\.77\.4:2379: .*refused the TLS handshake: it wants a client certificate/,
  );
  assert.ok(ms < 5000, `${ms} ms`);
  // An engine given only the CA keeps running and says why it is not registered.
  await h4.engine!.stop();
  const lone = await h4.startEngine("--etcd", url, "--etcd-cacert", join(dir, "ca.pem"));
  await until("the engine says why", async () => /refused the TLS handshake/.test(lone.log()), 5000);
  assert.match(lone.log(), /^cluster: etcd at https:\/\/192\.168\.77\.4:2379: .*not renewed, retrying/m);
  assert.equal(lone.exited(), false);
});
