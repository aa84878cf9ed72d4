/**
 * Names across hosts (issue 20) on an overlay network (issue 18): `db` on h1 answers by name and alias to `web` on
 * h2 (busybox nslookup run through `netctx exec`, which asks the nameserver its resolv.conf names: h2's gateway),
 * PTR gives db's qualified name, a context on h2's local network does not see it, and after `rm` on h1 the name is
 * gone on h2; the names of a node whose engine died (its lease ran out) are gone on h2 too.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type HostEngine, runAsync, startCluster, stopCluster, type TestCluster } from "../utils/cluster.ts";
import { createContext, createOverlay, execArgv, type Made, ok, until } from "../utils/overlay-cli.ts";

const NET = "pn";
let c: TestCluster;
let db: Made;
let web: Made;
let lan: Made;
/** h2's gateway on the overlay network, as web's resolv.conf names it. */
let gateway = "";
let engines: HostEngine[] = [];

/** busybox nslookup NAME inside m, through the nameserver of its own resolv.conf. */
async function nslookup(m: Made, name: string): Promise<{ code: number; out: string }> {
  const r = await runAsync(
    execArgv(m, ["sh", "-c", `cat /etc/resolv.conf; busybox nslookup ${name}`]),
    process.env,
  );
  return { code: r.code, out: r.stdout + r.stderr };
}

before(async () => {
  c = await startCluster({ hosts: 2, etcdHosts: [1] });
  engines = await Promise.all([1, 2].map((i) => c.host(i).startEngine("--node-ttl", "3")));
  const [h1, h2] = [c.host(1), c.host(2)];
  await createOverlay(h1, c.hosts, NET, "--subnet", "10.86.0.0/16");
  ok(await h2.netctx("network", "create", "lan", "--subnet", "10.87.0.0/24"), "create lan");
  ok(await h1.netctx("create", "db", "--level", "l2", "--network", NET, "--alias", "store"), "create db");
  db = { host: h1, name: "db", v4: "", v6: undefined };
  const view = JSON.parse(ok(await h1.netctx("inspect", "db", "--json"), "inspect db")) as {
    addresses: string[];
  };
  db.v4 = view.addresses.find((a) => !a.includes(":"))!.split("/")[0]!;
  web = await createContext(h2, "web", "l2", NET);
  lan = await createContext(h2, "lan1", "l2", "lan");
});

after(async () => {
  await stopCluster();
});

test("a context on h2 resolves a context on h1 by name, alias and NAME.NETWORK.DOMAIN", async () => {
  let last = { code: -1, out: "" };
  await until(
    "db answers on h2",
    async () => {
      last = await nslookup(web, "db");
      return last.code === 0 && last.out.includes(db.v4);
    },
    5000,
  );
  assert.match(
    last.out,
    new RegExp(`^nameserver ${web.v4.replace(/\.\d+$/, "").replace(/\./g, "\\.")}\\.`, "m"),
  );
  gateway = /^nameserver (\S+)$/m.exec(last.out)![1]!;
  for (const name of ["store", `db.${NET}.netctx`]) {
    const r = await nslookup(web, name);
    assert.equal(r.code, 0, r.out);
    assert.ok(r.out.includes(db.v4), `${name}: ${r.out}`);
  }
  const ptr = await nslookup(web, db.v4);
  assert.match(ptr.out, new RegExp(`db\\.${NET}\\.netctx`), ptr.out);
});

test("a context on h2 that is not on the overlay network gets NXDOMAIN for it", async () => {
  const r = await nslookup(lan, "db");
  assert.notEqual(r.code, 0, r.out);
  assert.match(r.out, /NXDOMAIN/, r.out);
});

/** Polls h2's gateway from h2's host (a sender inside the overlay's subnet) until `done` says the answer is right. */
async function timeOnH2(done: (out: string) => boolean, limitMs = 5000): Promise<number> {
  const started = performance.now();
  for (;;) {
    const r = await runAsync(c.host(2).argv(["busybox", "nslookup", "fresh", gateway]), process.env);
    if (done(r.stdout + r.stderr)) return performance.now() - started;
    if (performance.now() - started > limitMs)
      throw new Error(`no change on h2 within ${limitMs} ms: ${r.stdout}${r.stderr}`);
  }
}

test("a name created on h1 answers on h2 soon after create returns, and is gone soon after rm", async () => {
  ok(await c.host(1).netctx("create", "fresh", "--level", "l2", "--network", NET), "create fresh");
  const appeared = await timeOnH2((out) => /Address: 10\.86\./.test(out));
  ok(await c.host(1).netctx("rm", "fresh"), "rm fresh");
  const vanished = await timeOnH2((out) => /NXDOMAIN/.test(out));
  console.log(
    `# across hosts: answered ${appeared.toFixed(0)} ms after create, gone ${vanished.toFixed(0)} ms after rm`,
  );
  assert.ok(appeared < 1000 && vanished < 1000, `${appeared} / ${vanished} ms`);
});

test("after rm on h1 the name is gone on h2", async () => {
  ok(await c.host(1).netctx("rm", "db"), "rm db");
  let last = { code: -1, out: "" };
  await until(
    "db gone on h2",
    async () => {
      last = await nslookup(web, "db");
      return /NXDOMAIN/.test(last.out);
    },
    5000,
  );
  assert.notEqual(last.code, 0, last.out);
});

test("the names of a node whose engine died go when its lease runs out", async () => {
  ok(await c.host(1).netctx("create", "fresh", "--level", "l2", "--network", NET), "create fresh");
  await timeOnH2((out) => /Address: 10\.86\./.test(out));
  // SIGKILL: no goodbye, the keys under names/h1/ stay in etcd; only h1's record goes, with its 3 s lease.
  await engines[0]!.kill9();
  const gone = await timeOnH2((out) => /NXDOMAIN/.test(out), 15_000);
  console.log(
    `# a dead node's name gone on h2 ${gone.toFixed(0)} ms after its engine was killed (node TTL 3 s)`,
  );
});
