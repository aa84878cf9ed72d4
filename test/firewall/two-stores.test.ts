/**
 * Two state stores on one host (issue 17: a store owns only what it marked): each keeps its own nft tables. The
 * first claims `netctx` (its mark in the table's comment), the second uses `netctx-<its id>`; the rules of both
 * compose on the wire (NAT, anti-spoofing, published ports work for each), and the second store's gc, repair and a
 * failed network create, or a gc with a new empty state dir, leave the first store's tables byte for byte as they
 * were. Store A is the test's own state dir; store B has its own state dir and cgroup parent.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Firewall } from "../../src/firewall/firewall.ts";
import { NETCTX, netctxJson, netctxOk } from "../utils/cli.ts";
import { addVethNetns, delVethNetns, netnsPath } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";
import { must, sh } from "../utils/shell.ts";
import { type ProbeOp, probeSync, startServing } from "../utils/socket-probe.ts";

const OUTSIDE = { name: "outside", hostIfname: "up0" };
const SCRATCH = process.env.NETCTX_TEST_SCRATCH!;
const A_DIR = process.env.NETCTX_STATE_DIR!;
const B_DIR = join(SCRATCH, "store-b");
const B_CGROUP = join(process.env.NETCTX_CGROUP_PARENT!, "store-b");
const EMPTY_DIR = join(SCRATCH, "empty", "new", "dir");
const servers: ChildProcess[] = [];

/** `netctx` on store B (its own state dir and cgroup parent). */
function inB(...args: string[]): { code: number; stdout: string; out: string } {
  const r = spawnSync(NETCTX, ["--state-dir", B_DIR, ...args], {
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, NETCTX_CGROUP_PARENT: B_CGROUP },
  });
  return { code: r.status ?? -1, stdout: r.stdout, out: `${r.stdout}${r.stderr}` };
}

function inBOk(...args: string[]): string {
  const r = inB(...args);
  assert.equal(r.code, 0, `netctx --state-dir B ${args.join(" ")}: ${r.out}`);
  return r.stdout;
}

const storeId = (dir: string) => readFileSync(join(dir, "store-id"), "utf8").trim();

/** Our tables as the kernel lists them, by `family name` (nft -j, byte for byte; counters are not in them). */
function tables(): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of sh("nft list tables").split("\n")) {
    const m = line.match(/^table (inet|bridge|arp) (netctx\S*)$/);
    if (m) out.set(`${m[1]} ${m[2]}`, must(["nft", "-j", "list", "table", m[1]!, m[2]!]));
  }
  return out;
}

function tablesOf(name: string): Map<string, string> {
  return new Map([...tables()].filter(([k]) => k.endsWith(` ${name}`)));
}

/** The table's comment (nft 1.0.6 shows it only as text). */
const comment = (family: string, name: string) =>
  must(["nft", "-t", "list", "table", family, name]).match(/^\tcomment "(.*)"$/m)?.[1];

function get(ns: string, host: string, port: number): string | null {
  const op: ProbeOp = { op: "tcp", host, port, timeoutMs: 2000 };
  for (let i = 0; i < 2; i++) {
    const [r] = probeSync({ netns: netnsPath(ns) }, [op]).results;
    if (r?.ok) return r.data ?? "";
  }
  return null;
}

/**
 * Echo requests from the context that reached the host (counted in the host's input hook), from its own address and
 * from a spoofed one. The own ping goes first, so the gateway's neighbour entry is there and the spoofed packet is
 * sent without an ARP request (which ARP anti-spoofing would drop on its own): only the IPv4 source rule stops it.
 */
function arrivals(
  ctxNetns: string,
  own: string,
  spoofed: string,
  gateway: string,
): { own: number; spoofed: number } {
  sh(`nft add table inet probe; nft flush table inet probe
nft add chain inet probe in '{ type filter hook input priority 0; policy accept; }'
nft add rule inet probe in ip saddr ${own} icmp type echo-request counter
nft add rule inet probe in ip saddr ${spoofed} counter`);
  ping(ctxNetns, gateway, { source: own, count: 3 });
  must(["nsenter", `--net=${ctxNetns}`, "ip", "addr", "add", `${spoofed}/32`, "dev", "eth0"]);
  ping(ctxNetns, gateway, { source: spoofed, count: 3 });
  must(["nsenter", `--net=${ctxNetns}`, "ip", "addr", "del", `${spoofed}/32`, "dev", "eth0"]);
  const listed = JSON.parse(must(["nft", "-j", "list", "table", "inet", "probe"])) as {
    nftables: { rule?: { expr: { counter?: { packets: number } }[] } }[];
  };
  sh("nft delete table inet probe");
  const [ownCount, spoofedCount] = listed.nftables
    .flatMap((o) => o.rule?.expr ?? [])
    .flatMap((e) => (e.counter ? [e.counter.packets] : []));
  return { own: ownCount!, spoofed: spoofedCount! };
}

/** Each store's context: through NAT to the outside, its published port answers, a spoofed source is dropped. */
function works(store: "a" | "b"): void {
  const [ctx, net, port] = store === "a" ? ["ta1", "10.81.0", 8081] : ["tb1", "10.82.0", 8082];
  const view = JSON.parse(
    store === "a" ? netctxOk("inspect", ctx, "--json") : inBOk("inspect", ctx, "--json"),
  ) as { netns: string };
  assert.ok(ping(view.netns, "203.0.113.2", { tries: 2 }), `${ctx} reaches the outside through NAT`);
  assert.equal(get(OUTSIDE.name, "203.0.113.1", port), `${ctx} from 203.0.113.2`, `${ctx}'s published port`);
  const counted = arrivals(view.netns, `${net}.10`, `${net}.200`, `${net}.1`);
  assert.ok(counted.own > 0, `${ctx}: its own echo requests reach the host`);
  assert.equal(counted.spoofed, 0, `${ctx}: a spoofed source reached the host`);
}

before(async () => {
  mkdirSync(B_DIR, { recursive: true });
  mkdirSync(B_CGROUP, { recursive: true });
  addVethNetns({ ...OUTSIDE, hostAddresses: ["203.0.113.1/24"], addresses: ["203.0.113.2/24"] });
  netctxOk("network", "create", "anet", "--driver", "bridge", "--subnet", "10.81.0.0/24", "--nat");
  netctxOk(
    "create",
    "ta1",
    "--level",
    "l2",
    "--network",
    "anet",
    "--ip",
    "10.81.0.10",
    "--publish",
    "8081:80",
  );
  inBOk("network", "create", "bnet", "--driver", "bridge", "--subnet", "10.82.0.0/24", "--nat");
  inBOk("create", "tb1", "--level", "l2", "--network", "bnet", "--ip", "10.82.0.10", "--publish", "8082:80");
  for (const ctx of ["ta1", "tb1"]) {
    const served = await startServing(
      { op: "serve", proto: "tcp", port: 80, answer: `${ctx} from ` },
      { netns: netnsPath(`netctx-${ctx}`) },
    );
    servers.push(served.child);
  }
});

after(() => {
  for (const s of servers) s.kill();
  netctxOk("rm", "ta1");
  inB("rm", "tb1");
  inB("network", "rm", "bnet");
  delVethNetns(OUTSIDE);
  try {
    rmdirSync(B_CGROUP);
  } catch {}
});

test("the first store claims `netctx`, the second uses netctx-<its id> in every family", () => {
  const [a, b] = [storeId(A_DIR), storeId(B_DIR)];
  const own = `netctx-${b.slice(0, 8)}`;
  assert.deepEqual([...tables().keys()].sort(), [
    "bridge netctx",
    `bridge ${own}`,
    "inet netctx",
    `inet ${own}`,
  ]);
  assert.equal(comment("inet", "netctx"), `netctx store ${a} ${A_DIR}`);
  assert.equal(comment("bridge", "netctx"), `netctx store ${a} ${A_DIR}`);
  assert.equal(comment("inet", own), `netctx store ${b} ${B_DIR}`);
  assert.match(sh(`nft -j list set inet netctx nat4`), /10\.81\.0\.0/);
  assert.doesNotMatch(sh(`nft -j list set inet netctx nat4`), /10\.82\.0\.0/);
  assert.match(sh(`nft -j list set inet ${own} nat4`), /10\.82\.0\.0/);
  assert.doesNotMatch(sh(`nft -j list set inet ${own} nat4`), /10\.81\.0\.0/);
});

test("both stores' rules compose on the wire: NAT, published ports and anti-spoofing work for each", () => {
  works("a");
  works("b");
});

test("store B's gc, repair and failed network create leave store A's tables byte for byte", () => {
  const a = tablesOf("netctx");
  const b = tablesOf(`netctx-${storeId(B_DIR).slice(0, 8)}`);
  inBOk("gc");
  assert.deepEqual(tablesOf("netctx"), a, "after B's gc");
  inBOk("repair");
  assert.deepEqual(tablesOf("netctx"), a, "after B's repair");
  const failed = inB("network", "create", "zz", "--driver", "bridge", "--subnet", "10.81.0.0/24", "--nat");
  assert.notEqual(failed.code, 0, failed.out);
  assert.match(failed.out, /overlaps/);
  assert.deepEqual(tablesOf("netctx"), a, "after B's failed network create");
  assert.deepEqual(tablesOf(`netctx-${storeId(B_DIR).slice(0, 8)}`), b, "B's own tables too");
  assert.deepEqual(JSON.parse(inBOk("gc", "--dry-run", "--json")).actions, [], "B has nothing left to do");
  // (B's cgroup parent is a directory this test made inside A's: A's gc would take it while it is empty.)
  const aActions = netctxJson<{ actions: { object: string }[] }>("gc", "--dry-run").actions;
  assert.deepEqual(
    aActions.filter((x) => x.object !== `cgroup ${B_CGROUP}`),
    [],
    "nor has A",
  );
  works("a");
  works("b");
});

test("gc with a new empty state dir touches no table of A or B", () => {
  const before = tables();
  const r = spawnSync(NETCTX, ["--state-dir", EMPTY_DIR, "gc"], { encoding: "utf8", timeout: 60_000 });
  assert.deepEqual(tables(), before, `${r.stdout}${r.stderr}`);
  works("a");
});

test("removeAll() deletes only the store's own tables", () => {
  const b = storeId(B_DIR);
  const own = `netctx-${b.slice(0, 8)}`;
  const a = tablesOf("netctx");
  // B's firewall under A's name (as a Host that decided before A claimed it would): A's claimed tables stay.
  new Firewall({ table: { name: "netctx", store: b } }).removeAll();
  assert.deepEqual(tablesOf("netctx"), a);
  // Rebuilt tables get new handles: B's come back the same as text.
  const text = () => ["inet", "bridge"].map((f) => must(["nft", "list", "table", f, own])).join("");
  const bTables = text();
  new Firewall({ table: { name: own, store: b } }).removeAll();
  assert.deepEqual(tablesOf(own).size, 0);
  assert.deepEqual(tablesOf("netctx"), a);
  works("a");
  // B's repair brings its tables back, with its elements and its claim.
  inBOk("repair");
  assert.equal(text(), bTables);
  assert.equal(comment("inet", own), `netctx store ${b} ${B_DIR}`);
  works("b");
});
