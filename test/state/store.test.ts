import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import Database from "better-sqlite3";
import { readConfig } from "../../src/config.ts";
import { NetctxError } from "../../src/errors.ts";
import { migrate, SCHEMA_VERSION } from "../../src/state/migrations.ts";
import { Store } from "../../src/state/store.ts";
import { fails, freshDir, network } from "./helpers.ts";

test("a new store: directory 0700, WAL, foreign keys, current schema version", () => {
  const dir = freshDir("new");
  const store = Store.open(dir);
  assert.equal(store.dir, dir);
  store.insertNetwork(network("gone", [{ cidr: "10.1.0.0/24" }]));
  assert.equal(store.deleteNetwork("gone"), true);
  store.close();
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  const raw = new Database(join(dir, "netctx.db"));
  assert.equal(raw.pragma("journal_mode", { simple: true }), "wal");
  assert.equal(raw.pragma("user_version", { simple: true }), SCHEMA_VERSION);
  const tables = raw
    .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
    .pluck()
    .all();
  assert.deepEqual(tables, ["contexts", "leases", "networks", "policies", "subnets"]);
  // Only enforced foreign keys cascade the network's subnets away.
  assert.equal(raw.prepare("SELECT count(*) FROM subnets").pluck().get(), 0);
  raw.close();
  // Reopening an up-to-date store changes nothing and keeps the data.
  const again = Store.open(dir);
  assert.deepEqual(again.listNetworks(), []);
  again.close();
});

test("NETCTX_STATE_DIR is the default directory", () => {
  const dir = freshDir("envdir");
  const saved = process.env.NETCTX_STATE_DIR;
  process.env.NETCTX_STATE_DIR = dir;
  try {
    const store = Store.open(readConfig(process.env).stateDir);
    assert.equal(store.dir, dir);
    store.close();
    assert.ok(readdirSync(dir).includes("netctx.db"));
  } finally {
    process.env.NETCTX_STATE_DIR = saved;
  }
});

test("a store with a newer schema is refused and left byte-for-byte unchanged", () => {
  const dir = freshDir("newer");
  const store = Store.open(dir);
  store.insertNetwork(network("front", [{ cidr: "10.1.0.0/24" }]));
  store.close();
  const raw = new Database(join(dir, "netctx.db"));
  raw.pragma(`user_version = ${SCHEMA_VERSION + 41}`);
  raw.close();
  const file = join(dir, "netctx.db");
  const before = readFileSync(file);
  const listing = readdirSync(dir).sort();
  fails(
    () => Store.open(dir),
    "internal",
    `state store at ${dir} has schema version ${SCHEMA_VERSION + 41}; this netctx knows up to ${SCHEMA_VERSION}: upgrade netctx`,
  );
  assert.ok(readFileSync(file).equals(before), "file unchanged");
  assert.deepEqual(readdirSync(dir).sort(), listing, "no journal or WAL left behind");
});

test("a file that is not a database is refused, not overwritten", () => {
  const dir = freshDir("garbage");
  Store.open(dir).close();
  const file = join(dir, "netctx.db");
  writeFileSync(file, "this is not sqlite, it is a note somebody left here ".repeat(100));
  const before = readFileSync(file);
  fails(() => Store.open(dir), "internal", `state store at ${dir}: netctx.db is not a SQLite database`);
  assert.ok(readFileSync(file).equals(before));
});

test("networks: insert, get, list, update, delete, canonical subnets", () => {
  const store = Store.open(freshDir("networks"));
  store.insertNetwork(
    network(
      "front",
      [
        { cidr: "10.1.0.0/24", gateway: "10.1.0.1" },
        { cidr: "FD00:1:0::/64", gateway: "FD00:1::1" },
      ],
      {
        options: { vni: 42, peers: ["a", "b"], nested: { x: null } },
        createdAt: "2026-01-01T00:00:00.000Z",
      },
    ),
  );
  store.insertNetwork(
    network("back", [{ cidr: "10.2.0.0/24" }], { nat: false, internal: true, mtu: 9000, driver: "routed" }),
  );
  assert.deepEqual(store.getNetwork("front"), {
    name: "front",
    driver: "bridge",
    subnets: [
      { cidr: "10.1.0.0/24", gateway: "10.1.0.1" },
      { cidr: "fd00:1::/64", gateway: "fd00:1::1" },
    ],
    nat: true,
    internal: false,
    mtu: 1500,
    options: { vni: 42, peers: ["a", "b"], nested: { x: null } },
    createdAt: "2026-01-01T00:00:00.000Z",
  });
  const back = store.getNetwork("back")!;
  assert.equal(back.internal, true);
  assert.equal(back.nat, false);
  assert.equal(back.mtu, 9000);
  assert.deepEqual(back.subnets, [{ cidr: "10.2.0.0/24" }], "no gateway key when none was given");
  assert.match(back.createdAt ?? "", /^\d{4}-\d\d-\d\dT/);
  assert.deepEqual(
    store.listNetworks().map((n) => n.name),
    ["back", "front"],
  );
  assert.equal(store.getNetwork("nope"), undefined);

  fails(
    () => store.insertNetwork(network("front", [{ cidr: "10.9.0.0/24" }])),
    "conflict",
    'name: network "front" already exists',
  );

  store.updateNetwork({ ...back, mtu: 1400, subnets: [{ cidr: "10.2.0.0/24" }, { cidr: "fd00:2::/64" }] });
  assert.equal(store.getNetwork("back")?.mtu, 1400);
  assert.equal(store.getNetwork("back")?.subnets.length, 2);
  assert.equal(store.getNetwork("back")?.createdAt, back.createdAt, "createdAt kept");
  fails(
    () => store.updateNetwork(network("ghost", [{ cidr: "10.3.0.0/24" }])),
    "not-found",
    'network "ghost" does not exist',
  );

  assert.equal(store.deleteNetwork("back"), true);
  assert.equal(store.deleteNetwork("back"), false);
  assert.equal(store.getNetwork("back"), undefined);
  store.close();
});

test("bad network records are refused naming the field", () => {
  const store = Store.open(freshDir("badnet"));
  fails(
    () => store.insertNetwork(network("n", [{ cidr: "10.1.0.5/24" }])),
    "invalid",
    "subnet: 10.1.0.5/24 has host bits set (did you mean 10.1.0.0/24?)",
  );
  fails(
    () => store.insertNetwork(network("n", [{ cidr: "10.1.0.0/24", gateway: "10.2.0.1" }])),
    "invalid",
    "gateway: 10.2.0.1 is outside subnet 10.1.0.0/24",
  );
  fails(
    () => store.insertNetwork(network("n", [{ cidr: "10.1.0.0/24", gateway: "10.1.0.255" }])),
    "invalid",
    "gateway: 10.1.0.255 is the broadcast address of 10.1.0.0/24",
  );
  fails(
    () => store.insertNetwork(network("n", [{ cidr: "10.1.0.0/24", gateway: "fd00::1" }])),
    "invalid",
    "gateway: fd00::1 is outside subnet 10.1.0.0/24",
  );
  fails(
    () => store.insertNetwork(network("n", [{ cidr: "10.1.0.0/16" }, { cidr: "10.1.5.0/24" }])),
    "invalid",
    'subnet: 10.1.5.0/24 overlaps 10.1.0.0/16, also given for network "n"',
  );
  fails(
    () => store.insertNetwork(network("n", [{ cidr: "10.1.0.0/24" }], { mtu: 1.5 })),
    "invalid",
    "mtu: 1.5 is not a valid MTU",
  );
  const circular: Record<string, unknown> = {};
  circular.self = circular;
  fails(
    () => store.insertNetwork(network("n", [{ cidr: "10.1.0.0/24" }], { options: circular })),
    "invalid",
    "options: cannot be stored as JSON: Converting circular structure to JSON",
  );
  assert.deepEqual(store.listNetworks(), [], "nothing half-written");
  store.close();
});

test("a subnet overlapping another network's is a conflict naming that network", () => {
  const store = Store.open(freshDir("overlap"));
  store.insertNetwork(network("front", [{ cidr: "10.1.0.0/16" }, { cidr: "fd00:1::/48" }]));
  fails(
    () => store.insertNetwork(network("back", [{ cidr: "10.1.0.0/24" }])),
    "conflict",
    'subnet: 10.1.0.0/24 overlaps network "front" (10.1.0.0/16)',
  );
  fails(
    () => store.insertNetwork(network("back", [{ cidr: "10.0.0.0/8" }])),
    "conflict",
    'subnet: 10.0.0.0/8 overlaps network "front" (10.1.0.0/16)',
  );
  fails(
    () => store.insertNetwork(network("back", [{ cidr: "10.2.0.0/24" }, { cidr: "fd00:1:0:5::/64" }])),
    "conflict",
    'subnet: fd00:1:0:5::/64 overlaps network "front" (fd00:1::/48)',
  );
  assert.equal(store.getNetwork("back"), undefined, "the whole insert was undone");
  // Adjacent ranges and the other family are fine.
  store.insertNetwork(
    network("back", [{ cidr: "10.2.0.0/16" }, { cidr: "10.0.255.252/30" }, { cidr: "fd00:2::/48" }]),
  );
  // Updating a network never conflicts with itself, but does with others.
  store.updateNetwork(
    network("front", [{ cidr: "10.1.0.0/16" }, { cidr: "fd00:1::/48" }, { cidr: "10.3.0.0/24" }]),
  );
  fails(
    () =>
      store.updateNetwork(
        network("front", [{ cidr: "10.1.0.0/16" }, { cidr: "fd00:1::/48" }, { cidr: "10.2.128.0/24" }]),
      ),
    "conflict",
    'subnet: 10.2.128.0/24 overlaps network "back" (10.2.0.0/16)',
  );
  store.close();
});

test("contexts: insert, conflict, get, list, update, delete; spec round-trips as JSON", () => {
  const store = Store.open(freshDir("contexts"));
  const spec = {
    attachments: [
      {
        network: "front",
        ifname: "eth0",
        hostIfname: "nc-web",
        addresses: ["10.1.0.2/24"],
        gateways: ["10.1.0.1"],
        mac: "02:00:00:00:00:01",
        mtu: 1500,
      },
    ],
    netns: "netctx-web",
    table: 1001,
  };
  store.insertContext({ name: "web", level: "l2", status: "creating", spec });
  store.insertContext({ name: "api", level: "socket", status: "ready", spec: { attachments: [] } });
  fails(
    () => store.insertContext({ name: "web", level: "l3", status: "creating", spec: { attachments: [] } }),
    "conflict",
    'name: context "web" already exists',
  );
  const web = store.getContext("web")!;
  assert.deepEqual(
    { ...web, createdAt: undefined },
    { name: "web", level: "l2", status: "creating", spec, createdAt: undefined },
  );
  assert.deepEqual(
    store.listContexts().map((c) => c.name),
    ["api", "web"],
  );
  store.updateContext({ ...web, status: "ready", spec: { ...spec, table: 1002 } });
  assert.equal(store.getContext("web")?.status, "ready");
  assert.equal(store.getContext("web")?.spec.table, 1002);
  assert.equal(store.getContext("web")?.createdAt, web.createdAt);
  fails(
    () => store.updateContext({ name: "ghost", level: "l2", status: "ready", spec: { attachments: [] } }),
    "not-found",
    'context "ghost" does not exist',
  );
  fails(
    () => store.insertContext({ name: "x", level: "l4" as "l2", status: "ready", spec: { attachments: [] } }),
    "invalid",
    'level: unknown level "l4" (known: l2, l3, socket)',
  );
  assert.equal(store.deleteContext("web"), true);
  assert.equal(store.deleteContext("web"), false);
  assert.equal(store.getContext("web"), undefined);
  store.close();
});

test("transactions: nested calls join the outer one; a throw undoes everything; async is refused", () => {
  const store = Store.open(freshDir("tx"));
  assert.throws(() =>
    store.transaction(() => {
      store.insertContext({ name: "a", level: "l2", status: "creating", spec: { attachments: [] } });
      store.transaction(() =>
        store.insertContext({ name: "b", level: "l2", status: "creating", spec: { attachments: [] } }),
      );
      throw new Error("kernel said no");
    }),
  );
  assert.deepEqual(store.listContexts(), [], "inner work rolled back with the outer transaction");

  const out = store.transaction(() => {
    store.insertContext({ name: "a", level: "l2", status: "creating", spec: { attachments: [] } });
    // A nested failure that the caller handles undoes only its own part.
    try {
      store.transaction(() => {
        store.insertContext({ name: "b", level: "l2", status: "creating", spec: { attachments: [] } });
        store.insertContext({ name: "a", level: "l2", status: "creating", spec: { attachments: [] } });
      });
    } catch {}
    return 7;
  });
  assert.equal(out, 7);
  assert.deepEqual(
    store.listContexts().map((c) => c.name),
    ["a"],
  );
  fails(
    () =>
      store.transaction(async () =>
        store.insertContext({ name: "z", level: "l2", status: "creating", spec: { attachments: [] } }),
      ),
    "internal",
    "a state transaction must be synchronous (the function returned a promise)",
  );
  assert.equal(store.getContext("z"), undefined);
  store.close();
});

test("op marks: a column pair with the record, typed, cleared by a write without one", () => {
  const store = Store.open(freshDir("opmark"));
  const op = { op: "create" as const, pid: 4242, start: "123456" };
  store.insertNetwork({ ...network("front", [{ cidr: "10.1.0.0/24" }]), op });
  assert.deepEqual(store.getNetwork("front")?.op, op);
  assert.deepEqual(store.getNetwork("front")?.options, {}, "not inside the options");
  store.updateNetwork(network("front", [{ cidr: "10.1.0.0/24" }]));
  assert.equal("op" in store.getNetwork("front")!, false);

  store.insertContext({ name: "web", level: "l2", status: "creating", spec: { attachments: [] }, op });
  assert.deepEqual(store.getContext("web")?.op, op);
  assert.deepEqual(store.getContext("web")?.spec, { attachments: [] }, "not inside the spec");
  const removing = { op: "remove" as const, pid: 4243, start: "" };
  store.updateContext({ ...store.getContext("web")!, status: "removing", op: removing });
  assert.deepEqual(store.listContexts()[0]?.op, removing);
  store.close();
});

test("a v1 store's op marks move out of the JSON into the columns; everything else stays", () => {
  const dir = freshDir("v1");
  // A store as netctx left it before the op columns: the schema of version 1, marks inside options and spec.
  mkdirSync(dir, { recursive: true });
  const raw = new Database(join(dir, "netctx.db"));
  migrate(raw, dir, (fn) => raw.transaction(fn)(), 1);
  assert.equal(raw.pragma("user_version", { simple: true }), 1);
  const insertNetwork = raw.prepare(
    `INSERT INTO networks (name, driver, nat, internal, mtu, options, created_at)
        VALUES (?, 'bridge', 1, 0, 1500, ?, '2026-01-01T00:00:00.000Z')`,
  );
  insertNetwork.run("making", JSON.stringify({ antispoof: true, op: { op: "create", pid: 77, start: "9" } }));
  insertNetwork.run("plain", JSON.stringify({ antispoof: false, vni: 5 }));
  // asOpMark read a mark without a start as start ""; one with no numeric pid as no mark at all.
  insertNetwork.run("odd", JSON.stringify({ op: { op: "remove", pid: 78 } }));
  insertNetwork.run("junk", JSON.stringify({ op: "yes" }));
  const insertContext = raw.prepare(
    `INSERT INTO contexts (name, level, status, spec, created_at)
        VALUES (?, 'l2', ?, ?, '2026-01-01T00:00:00.000Z')`,
  );
  const spec = { attachments: [], netns: "/run/netns/netctx-web" };
  insertContext.run(
    "web",
    "removing",
    JSON.stringify({ ...spec, op: { op: "remove", pid: 79, start: "1" } }),
  );
  insertContext.run("api", "ready", JSON.stringify(spec));
  raw.close();

  const store = Store.open(dir);
  const nets = new Map(store.listNetworks().map((n) => [n.name, n]));
  assert.deepEqual(nets.get("making")?.op, { op: "create", pid: 77, start: "9" });
  assert.deepEqual(nets.get("making")?.options, { antispoof: true });
  assert.deepEqual(nets.get("plain")?.options, { antispoof: false, vni: 5 });
  assert.equal(nets.get("plain")?.op, undefined);
  assert.deepEqual(nets.get("odd")?.op, { op: "remove", pid: 78, start: "" });
  assert.equal(nets.get("junk")?.op, undefined);
  assert.deepEqual(nets.get("junk")?.options, {});
  assert.deepEqual(store.getContext("web"), {
    name: "web",
    level: "l2",
    status: "removing",
    spec,
    op: { op: "remove", pid: 79, start: "1" },
    createdAt: "2026-01-01T00:00:00.000Z",
  });
  assert.deepEqual(store.getContext("api")?.spec, spec);
  assert.equal(store.getContext("api")?.op, undefined);
  store.close();
  const after = new Database(join(dir, "netctx.db"));
  assert.equal(after.pragma("user_version", { simple: true }), SCHEMA_VERSION);
  after.close();
});

test("a network records the scene that made it; a store from before scenes reads as made by hand", () => {
  const dir = freshDir("scene");
  mkdirSync(dir, { recursive: true });
  const raw = new Database(join(dir, "netctx.db"));
  migrate(raw, dir, (fn) => raw.transaction(fn)(), 2);
  raw
    .prepare(
      `INSERT INTO networks (name, driver, nat, internal, mtu, options, created_at)
          VALUES ('old', 'bridge', 0, 0, 1500, '{}', '2026-01-01T00:00:00.000Z')`,
    )
    .run();
  raw.close();
  const store = Store.open(dir);
  assert.equal(store.getNetwork("old")?.scene, undefined, "never pruned by any scene");
  const net = {
    name: "mine",
    driver: "bridge",
    subnets: [],
    nat: false,
    internal: false,
    mtu: 1500,
    options: {},
  };
  store.insertNetwork({ ...net, scene: "/etc/netctx/shop.yaml" });
  assert.equal(store.getNetwork("mine")?.scene, "/etc/netctx/shop.yaml");
  assert.deepEqual(store.getNetwork("mine")?.options, {}, "not a key hidden in options");
  store.updateNetwork({ ...store.getNetwork("mine")!, mtu: 1400 });
  assert.equal(store.getNetwork("mine")?.scene, "/etc/netctx/shop.yaml", "an update keeps it");
  store.close();
});

test("a malformed row is refused naming the record and the field", () => {
  const dir = freshDir("malformed");
  const store = Store.open(dir);
  store.insertNetwork(network("front", [{ cidr: "10.1.0.0/24" }]));
  store.insertContext({ name: "web", level: "l2", status: "ready", spec: { attachments: [] } });
  const raw = new Database(join(dir, "netctx.db"));
  raw
    .prepare("UPDATE contexts SET spec = ? WHERE name = 'web'")
    .run(JSON.stringify({ attachments: [{ network: "front", ifname: 5 }] }));
  raw.prepare("UPDATE networks SET options = '[1]' WHERE name = 'front'").run();
  raw.close();
  const context = `state store at ${dir}: context "web" is malformed: spec.attachments[0].ifname:`;
  for (const read of [() => store.getContext("web"), () => store.listContexts()])
    assert.throws(read, (err: unknown) => {
      assert.ok(err instanceof NetctxError, String(err));
      assert.equal(err.code, "internal");
      assert.ok(err.message.startsWith(context), err.message);
      assert.match(err.message, /expected string, received number/);
      return true;
    });
  assert.throws(
    () => store.getNetwork("front"),
    (err: unknown) => {
      assert.ok(err instanceof NetctxError, String(err));
      assert.match(
        err.message,
        /^state store at .*: network "front" is malformed: options: .*expected record/,
      );
      return true;
    },
  );
  store.close();
});

test("a spec the schema refuses is not written", () => {
  const store = Store.open(freshDir("badspec"));
  fails(
    () =>
      store.insertContext({
        name: "web",
        level: "l2",
        status: "creating",
        spec: { attachments: [], table: 1.5 },
      }),
    "invalid",
    "spec.table: Invalid input: expected int, received number",
  );
  fails(
    () =>
      store.insertContext({
        name: "web",
        level: "l2",
        status: "creating",
        spec: { attachments: [], colour: "red" } as unknown as { attachments: [] },
      }),
    "invalid",
    'spec: unknown key "colour"',
  );
  assert.equal(store.getContext("web"), undefined);
  store.close();
});
