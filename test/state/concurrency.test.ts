import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, before, test } from "node:test";
import Database from "better-sqlite3";
import { build } from "esbuild";
import { NetctxError } from "../../src/errors.ts";
import type { Lease } from "../../src/model/records.ts";
import { Store } from "../../src/state/store.ts";
import { freshDir, network } from "./helpers.ts";

let worker = "";

// Each worker is a separate node process running the real store code. Under `node --import tsx` one costs ~0.6 s
// of CPU before it does anything, which made 64 of them take a minute on two cores; bundled once with esbuild
// it is ~0.15 s. better-sqlite3 is native and stays external, resolved to its absolute path.
before(async () => {
  const out = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH ?? tmpdir(), "worker-"));
  const nativeEntry = createRequire(import.meta.url).resolve("better-sqlite3");
  worker = join(out, "store-worker.mjs");
  await build({
    entryPoints: [join(import.meta.dirname, "store-worker.ts")],
    outfile: worker,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    logLevel: "warning",
    plugins: [
      {
        name: "native-external",
        setup(b) {
          b.onResolve({ filter: /^better-sqlite3$/ }, () => ({ path: nativeEntry, external: true }));
        },
      },
    ],
  });
});

interface Worker {
  child: ChildProcess;
  lines: string[];
  /** Resolves when the worker printed a line matching `re`. */
  waitFor(re: RegExp): Promise<string>;
  exited: Promise<number | null>;
}

const running = new Set<ChildProcess>();

// A failed assertion must not leave a worker blocked forever (the hang worker never exits on its own).
afterEach(() => {
  for (const child of running) child.kill("SIGKILL");
  running.clear();
});

function startWorker(args: string[]): Worker {
  const child = spawn(process.execPath, [worker, ...args], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  running.add(child);
  const lines: string[] = [];
  let buf = "";
  let stderr = "";
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  child.stdout!.setEncoding("utf8").on("data", (d: string) => {
    buf += d;
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      for (const w of waiters.filter((w) => w.re.test(line))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  child.stderr!.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) =>
    child.on("close", (code) => {
      running.delete(child);
      if (code !== 0 && code !== null) console.error(`worker ${args.join(" ")} exited ${code}: ${stderr}`);
      for (const w of waiters) w.resolve(`exited ${code}`);
      resolve(code);
    }),
  );
  return {
    child,
    lines,
    exited,
    waitFor: (re) => {
      const seen = lines.find((l) => re.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve) => waiters.push({ re, resolve }));
    },
  };
}

type Outcome = { ok: true; value: Lease[] } | { ok: false; code: string; message: string };

/** Starts n workers, waits until every one is ready, releases them all at once, collects their results. */
async function race(n: number, args: (i: number) => string[]): Promise<Outcome[]> {
  const workers = Array.from({ length: n }, (_, i) => startWorker(args(i)));
  const ready = await Promise.all(workers.map((w) => w.waitFor(/^ready$|^exited/)));
  assert.deepEqual(new Set(ready), new Set(["ready"]), "every worker got ready");
  for (const w of workers) w.child.stdin!.write("go\n");
  const results = await Promise.all(workers.map((w) => w.waitFor(/^\{/)));
  const codes = await Promise.all(workers.map((w) => w.exited));
  assert.deepEqual(new Set(codes), new Set([0]));
  return results.map((r) => JSON.parse(r) as Outcome);
}

test("16 processes allocating on one network at the same moment get 16 distinct addresses", async () => {
  const dir = freshDir("race16");
  const store = Store.open(dir);
  store.insertNetwork(
    network("front", [{ cidr: "10.1.0.0/24", gateway: "10.1.0.1" }, { cidr: "fd00:1::/64" }]),
  );
  store.close();
  const results = await race(16, (i) => ["alloc", dir, "front", `ctx-${i}`]);
  const failures = results.filter((r) => !r.ok);
  assert.deepEqual(failures, []);
  const leases = results.flatMap((r) => (r.ok ? r.value : []));
  assert.equal(leases.length, 32, "a v4 and a v6 lease each");
  const v4 = leases.filter((l) => l.subnet === "10.1.0.0/24").map((l) => l.address);
  assert.equal(new Set(v4).size, 16);
  // Lowest-free under a write lock: together they fill .2-.17 with no holes.
  assert.deepEqual(
    [...v4].sort((a, b) => Number(a.split(".")[3]) - Number(b.split(".")[3])),
    Array.from({ length: 16 }, (_, i) => `10.1.0.${i + 2}`),
  );
  assert.equal(new Set(leases.filter((l) => l.subnet === "fd00:1::/64").map((l) => l.address)).size, 16);
  const check = Store.open(dir);
  assert.equal(check.leases({ network: "front" }).length, 32);
  check.close();
});

test("16 processes creating the same fresh store at once all succeed", async () => {
  const dir = freshDir("fresh16");
  const results = await race(16, (i) => ["open-late", dir, `net-${i}`, "x", `10.${i}.0.0/16`]);
  assert.deepEqual(
    results.filter((r) => !r.ok),
    [],
  );
  const store = Store.open(dir);
  assert.equal(store.listNetworks().length, 16);
  store.close();
});

test("64 processes on a /26 with room for 61: the rest fail cleanly with exhausted, no duplicates", async () => {
  const dir = freshDir("race64");
  const store = Store.open(dir);
  store.insertNetwork(network("small", [{ cidr: "10.2.0.0/26", gateway: "10.2.0.1" }]));
  store.close();
  const results = await race(64, (i) => ["alloc", dir, "small", `ctx-${i}`]);
  const ok = results.flatMap((r) => (r.ok ? r.value : []));
  const failed = results.filter((r) => !r.ok);
  // 64 addresses - network - broadcast - gateway = 61.
  assert.equal(ok.length, 61);
  assert.equal(new Set(ok.map((l) => l.address)).size, 61);
  assert.equal(failed.length, 3);
  for (const f of failed) {
    assert.equal(f.code, "exhausted");
    assert.equal(f.message, 'network "small": no free address left in 10.2.0.0/26');
  }
  const check = Store.open(dir);
  assert.equal(check.leases({ network: "small" }).length, 61);
  check.close();
});

test("a write lock held past busy_timeout is waited out by the retry loop", async () => {
  const dir = freshDir("hold");
  const store = Store.open(dir);
  store.insertNetwork(network("front", [{ cidr: "10.1.0.0/24" }]));
  const holder = startWorker(["hold", dir, "front", "holder", "1600"]);
  assert.equal(await holder.waitFor(/^locked$|^exited/), "locked");
  const started = Date.now();
  // SQLite's busy handler alone gives up after 1 s; the allocation must still succeed.
  const [lease] = store.allocate("front", "waiter");
  const waited = Date.now() - started;
  assert.equal(lease?.address, "10.1.0.1");
  assert.ok(waited > 1000, `waited ${waited} ms`);
  assert.ok(store.getContext("holder"), "the holder's transaction committed first");
  assert.equal(await holder.exited, 0);
  store.close();
});

test("a lock held beyond the budget fails with busy, and nothing is written", () => {
  const dir = freshDir("busy");
  const store = Store.open(dir, { busyBudgetMs: 300 });
  store.insertNetwork(network("front", [{ cidr: "10.1.0.0/24" }]));
  const other = new Database(join(dir, "netctx.db"));
  other.exec("BEGIN IMMEDIATE");
  const started = Date.now();
  assert.throws(
    () => store.allocate("front", "web"),
    (err: unknown) => err instanceof NetctxError && err.code === "busy" && /stayed locked/.test(err.message),
  );
  const waited = Date.now() - started;
  assert.ok(waited >= 300 && waited < 2500, `gave up after ${waited} ms`);
  other.exec("ROLLBACK");
  other.close();
  assert.deepEqual(store.leases(), []);
  assert.equal(store.allocate("front", "web")[0]?.address, "10.1.0.1");
  store.close();
});

test("a process killed with SIGKILL inside a transaction leaves the store readable and consistent", async () => {
  const dir = freshDir("kill");
  const store = Store.open(dir);
  store.insertNetwork(
    network("front", [{ cidr: "10.1.0.0/24", gateway: "10.1.0.1" }, { cidr: "fd00:1::/64" }]),
  );
  store.close();
  const victim = startWorker(["hang", dir, "front", "victim"]);
  assert.equal(await victim.waitFor(/^inside$|^exited/), "inside");
  // The uncommitted 24 MB did not fit SQLite's page cache: it is on disk in the WAL, without a commit frame.
  const walBytes = statSync(join(dir, "netctx.db-wal")).size;
  assert.ok(walBytes > 4 << 20, `WAL holds ${walBytes} bytes of the open transaction`);
  victim.child.kill("SIGKILL");
  assert.equal(await victim.exited, null);

  const raw = new Database(join(dir, "netctx.db"));
  assert.equal(raw.pragma("integrity_check", { simple: true }), "ok");
  assert.deepEqual(raw.pragma("foreign_key_check"), []);
  raw.close();

  const after = Store.open(dir, { busyBudgetMs: 500 });
  assert.deepEqual(
    after.leases().map((l) => [l.owner, l.address]),
    [
      ["victim", "10.1.0.2"],
      ["victim", "fd00:1::1"],
    ],
    "the committed allocation survived, the open one is gone",
  );
  assert.deepEqual(after.listContexts(), []);
  // The lock died with the process, and the addresses the dead transaction had picked are free again.
  assert.deepEqual(
    after.allocate("front", "next").map((l) => l.address),
    ["10.1.0.3", "fd00:1::2"],
  );
  after.close();
});
