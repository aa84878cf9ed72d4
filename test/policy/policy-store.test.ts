/** Policy records in the SQLite store (migration 6): by name, refused twice or beyond the tables' bits, and the cheap questions the engine asks on every create. */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import Database from "better-sqlite3";
import { NetctxError } from "../../src/errors.ts";
import type { PolicyRecord } from "../../src/model/policy.ts";
import { MAX_POLICIES } from "../../src/model/policy-tables.ts";
import { migrate } from "../../src/state/migrations.ts";
import { Store } from "../../src/state/store.ts";
import { freshDir, network } from "../state/helpers.ts";

const policy = (name: string, extra: Partial<PolicyRecord> = {}): PolicyRecord => ({
  name,
  to: "db",
  from: "app=web",
  ports: [{ proto: "tcp", port: 5432 }],
  egress: false,
  ...extra,
});

test("policies are kept as given, listed by name, removed once", () => {
  const store = Store.open(freshDir("policies"));
  try {
    store.insertPolicy(policy("zz", { scene: "s1", ports: [{ proto: "udp", port: 8000, end: 8010 }] }));
    store.insertPolicy(policy("aa", { egress: true, to: "world" }));
    assert.deepEqual(
      store.listPolicies().map((p) => p.name),
      ["aa", "zz"],
    );
    const zz = store.getPolicy("zz")!;
    assert.equal(zz.scene, "s1");
    assert.deepEqual(zz.ports, [{ proto: "udp", port: 8000, end: 8010 }]);
    assert.ok(zz.createdAt);
    assert.equal(store.getPolicy("aa")!.egress, true);
    assert.throws(() => store.insertPolicy(policy("aa")), /name: policy "aa" already exists/);
    assert.equal(store.deletePolicy("aa"), true);
    assert.equal(store.deletePolicy("aa"), false);
    assert.equal(store.getPolicy("aa"), undefined);
  } finally {
    store.close();
  }
});

test("a malformed policy is refused on write, naming the field", () => {
  const store = Store.open(freshDir("bad-policy"));
  try {
    assert.throws(
      () => store.insertPolicy(policy("p", { ports: [{ proto: "tcp", port: 0 }] })),
      (err: unknown) => err instanceof NetctxError && err.code === "invalid" && /ports/.test(err.message),
    );
    assert.deepEqual(store.listPolicies(), []);
  } finally {
    store.close();
  }
});

test(`at most ${MAX_POLICIES} policies: one more is refused, clearly`, () => {
  const store = Store.open(freshDir("max-policies"));
  try {
    store.transaction(() => {
      for (let i = 0; i < MAX_POLICIES; i++) store.insertPolicy(policy(`p${i}`));
    });
    assert.throws(
      () => store.insertPolicy(policy("one-more")),
      (err: unknown) =>
        err instanceof NetctxError &&
        err.code === "exhausted" &&
        /already 256 policies, the most the data path's tables hold \(256\)/.test(err.message),
    );
    assert.equal(store.listPolicies().length, MAX_POLICIES);
  } finally {
    store.close();
  }
});

test("policyActive: a policy, an isolating or a default-deny network turns it on", () => {
  const store = Store.open(freshDir("active"));
  try {
    store.insertNetwork(network("plain", [{ cidr: "10.1.0.0/24" }]));
    assert.equal(store.policyActive(), false);
    store.insertNetwork({ ...network("iso", [{ cidr: "10.2.0.0/24" }]), options: { isolate: true } });
    assert.equal(store.policyActive(), true);
    store.deleteNetwork("iso");
    assert.equal(store.policyActive(), false);
    store.insertNetwork({ ...network("deny", [{ cidr: "10.3.0.0/24" }]), options: { defaultDeny: true } });
    assert.equal(store.policyActive(), true);
    store.deleteNetwork("deny");
    store.insertPolicy(policy("p"));
    assert.equal(store.policyActive(), true);
    store.deletePolicy("p");
    assert.equal(store.policyActive(), false);
  } finally {
    store.close();
  }
});

test("foreignWrites changes for another process's commit, not for this one's own", () => {
  const dir = freshDir("foreign");
  const mine = Store.open(dir);
  const other = Store.open(dir);
  try {
    const start = mine.foreignWrites();
    mine.insertPolicy(policy("mine"));
    assert.equal(mine.foreignWrites(), start, "its own write");
    other.insertPolicy(policy("theirs"));
    assert.notEqual(mine.foreignWrites(), start, "another connection's commit");
  } finally {
    mine.close();
    other.close();
  }
});

test("policyInputsRevision changes with every write of a policy or network, by anyone; none inside a transaction", () => {
  const dir = freshDir("revision");
  const mine = Store.open(dir);
  const other = Store.open(dir);
  try {
    const seen = new Set<string | undefined>();
    const expectNew = (what: string) => {
      const r = mine.policyInputsRevision();
      assert.ok(r !== undefined && !seen.has(r), `${what}: a new revision (${r})`);
      seen.add(r);
    };
    expectNew("start");
    assert.equal(mine.policyInputsRevision(), [...seen][0], "nothing written: the same");
    mine.insertPolicy(policy("mine"));
    expectNew("its own policy");
    mine.deletePolicy("mine");
    expectNew("its own policy removed");
    mine.insertNetwork(network("n1", [{ cidr: "10.61.0.0/24" }]));
    expectNew("its own network");
    mine.updateNetwork({ ...mine.getNetwork("n1")!, options: { isolate: true } });
    expectNew("its network changed");
    other.insertPolicy(policy("theirs"));
    expectNew("another connection's policy");
    mine.deleteNetwork("n1");
    expectNew("its network removed");
    mine.transaction(() => assert.equal(mine.policyInputsRevision(), undefined, "inside a transaction"));
  } finally {
    mine.close();
    other.close();
  }
});

test("a store of schema 5 gains the policies table, its records untouched", () => {
  const dir = freshDir("migrate-6");
  mkdirSync(dir, { recursive: true });
  const raw = new Database(join(dir, "netctx.db"));
  migrate(raw, dir, (fn) => raw.transaction(fn)(), 5);
  raw
    .prepare(
      `INSERT INTO networks (name, driver, nat, internal, mtu, options, created_at)
          VALUES ('kept', 'bridge', 0, 0, 1500, '{"isolate":true}', '2026-01-01T00:00:00.000Z')`,
    )
    .run();
  assert.equal(raw.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'policies'").pluck().get(), 0);
  raw.close();
  const store = Store.open(dir);
  try {
    assert.equal(store.getNetwork("kept")?.options.isolate, true);
    assert.equal(store.policyActive(), true);
    store.insertPolicy(policy("p"));
    assert.equal(store.listPolicies().length, 1);
  } finally {
    store.close();
  }
});
