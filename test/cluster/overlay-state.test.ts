/**
 * Overlay networks in etcd (issue 18), state level: three hosts with an engine each and a 3-member etcd among them
 * (test/utils/cluster.ts). A network made on one host is mirrored by every engine; contexts get addresses from the
 * blocks their host leased, and no address is ever handed out twice across hosts; blocks survive an engine's kill -9
 * and go with `cluster forget`; with etcd away overlay operations fail in one line within 5 s while a create inside
 * a block with room still works, and the mirror converges when etcd is back. The kernel data path (VXLAN, peers) is
 * another module's: nothing here sends a packet across hosts.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { BlockView, OverlayStats } from "../../src/engine/overlay.ts";
import type { ContextView } from "../../src/engine/views.ts";
import type { NetworkRecord } from "../../src/model/records.ts";
import { cidrContains, cidrsOverlap, parseIp, parseSubnet } from "../../src/net/cidr.ts";
import type { CliResult } from "../utils/cli.ts";
import { startCluster, stopCluster, type TestCluster, type TestHost } from "../utils/cluster.ts";
import { sleep } from "../utils/wait.ts";

const TTL = 3;
let c: TestCluster;

before(async () => {
  c = await startCluster({ hosts: 3, etcdHosts: [1, 2, 3] });
  await Promise.all([1, 2, 3].map((i) => c.host(i).startEngine("--node-ttl", String(TTL))));
});
after(() => stopCluster());

function ok(r: CliResult, what: string): string {
  assert.equal(r.code, 0, `${what}: ${r.stderr}`);
  return r.stdout;
}

function oneLine(r: CliResult): string {
  assert.notEqual(r.code, 0, r.stdout);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line, got: ${r.stderr}`);
  return lines[0]!;
}

async function timed(p: Promise<CliResult>): Promise<[CliResult, number]> {
  const started = Date.now();
  const r = await p;
  return [r, Date.now() - started];
}

async function until(what: string, read: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await read()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(150);
  }
}

async function networks(h: TestHost): Promise<NetworkRecord[]> {
  return JSON.parse(ok(await h.netctx("network", "ls", "--json"), "network ls")) as NetworkRecord[];
}

async function listed(h: TestHost, name: string): Promise<boolean> {
  return (await networks(h)).some((n) => n.name === name);
}

async function blocks(h: TestHost, network: string): Promise<BlockView[]> {
  const view = JSON.parse(ok(await h.netctx("network", "inspect", network), "network inspect")) as {
    blocks: BlockView[];
  };
  return view.blocks;
}

async function stats(h: TestHost): Promise<OverlayStats> {
  const s = JSON.parse(ok(await h.netctx("cluster", "status", "--json"), "cluster status")) as {
    overlay: OverlayStats;
  };
  return s.overlay;
}

function inBlock(block: string, address: string): boolean {
  const b = parseSubnet(block, "block");
  const ip = parseIp(address.split("/")[0]!, "ip");
  return cidrContains(b, ip.family, ip.addr);
}

test("an overlay network made on host 1 is listed on hosts 2 and 3 within a few seconds; clashes are refused", async () => {
  ok(
    await c
      .host(1)
      .netctx(
        "network",
        "create",
        "ov",
        "--driver",
        "overlay",
        "--subnet",
        "10.70.0.0/16",
        "--subnet",
        "fd70::/48",
        "--block",
        "28",
      ),
    "create ov",
  );
  for (const i of [2, 3]) await until(`ov on h${i}`, () => listed(c.host(i), "ov"), 5000);
  const seen = (await networks(c.host(3))).find((n) => n.name === "ov")!;
  assert.equal(seen.driver, "overlay");
  assert.equal(seen.cluster?.node, "h3");
  assert.deepEqual(seen.cluster?.blockLengths, [28, 64]);
  assert.deepEqual(
    seen.subnets.map((s) => s.cidr),
    ["10.70.0.0/16", "fd70::/48"],
  );
  // The name and the subnets are the cluster's: another host cannot take either.
  assert.match(
    oneLine(
      await c.host(2).netctx("network", "create", "ov", "--driver", "overlay", "--subnet", "10.71.0.0/16"),
    ),
    /already exists/,
  );
  assert.match(
    oneLine(
      await c.host(2).netctx("network", "create", "ov9", "--driver", "overlay", "--subnet", "10.70.5.0/24"),
    ),
    /10\.70\.5\.0\/24 overlaps overlay network "ov"/,
  );
  // A second network gets a VNI of its own.
  ok(
    await c.host(2).netctx("network", "create", "ovb", "--driver", "overlay", "--subnet", "10.72.0.0/16"),
    "ovb",
  );
  await until("ovb on h1", () => listed(c.host(1), "ovb"), 5000);
  const vnis = (await networks(c.host(1))).filter((n) => n.cluster).map((n) => n.cluster!.vni);
  assert.equal(new Set(vnis).size, vnis.length, String(vnis));
  // Without a cluster member to ask, the CLI refuses in one line.
  const lone = await c
    .host(1)
    .netctx(
      "--state-dir",
      `${c.scratch}/lone`,
      "network",
      "create",
      "x",
      "--driver",
      "overlay",
      "--subnet",
      "10.80.0.0/16",
    );
  assert.match(oneLine(lone), /overlay networks need `netctx serve --etcd \.\.\.`/);
});

test("48 parallel creates over 3 hosts: 48 distinct addresses, blocks never overlap, each inside its host's blocks", async () => {
  const jobs = Array.from({ length: 48 }, (_, i) => {
    const h = c.host((i % 3) + 1);
    return h
      .netctx("create", `s${i}`, "--level", "socket", "--network", "ov", "--json")
      .then((r) => ({ h, r }));
  });
  const done = await Promise.all(jobs);
  const views = done.map(({ h, r }) => ({
    host: h.name,
    view: JSON.parse(ok(r, `create on ${h.name}`)) as ContextView,
  }));
  const v4 = views.map((v) => v.view.addresses.find((a) => !a.includes(":"))!.split("/")[0]!);
  const v6 = views.map((v) => v.view.addresses.find((a) => a.includes(":"))!.split("/")[0]!);
  assert.equal(new Set(v4).size, 48, v4.join(" "));
  assert.equal(new Set(v6).size, 48);
  const all = await blocks(c.host(1), "ov");
  for (const [i, x] of all.entries())
    for (const y of all.slice(i + 1))
      assert.ok(
        !cidrsOverlap(parseSubnet(x.cidr, "b"), parseSubnet(y.cidr, "b")),
        `${x.cidr} (${x.node}) overlaps ${y.cidr} (${y.node})`,
      );
  // A /28 holds 13 contexts beside its gateway: 16 per host took a second IPv4 block each.
  for (const h of ["h1", "h2", "h3"])
    assert.equal(all.filter((b) => b.node === h && !b.cidr.includes(":")).length, 2, JSON.stringify(all));
  for (const { host, view } of views)
    for (const a of view.addresses)
      assert.ok(
        all.some((b) => b.node === host && inBlock(b.cidr, a)),
        `${view.name} on ${host}: ${a} is in none of its blocks`,
      );
  // The node records list the blocks too, and inspect names the node of a context.
  const status = JSON.parse(ok(await c.host(2).netctx("cluster", "status", "--json"), "status")) as {
    nodes: { name: string; blocks: { network: string; cidr: string }[] }[];
  };
  await until(
    "node records list the blocks",
    async () => {
      const s = JSON.parse(
        ok(await c.host(2).netctx("cluster", "status", "--json"), "status"),
      ) as typeof status;
      return s.nodes.reduce((n, node) => n + node.blocks.length, 0) === all.length;
    },
    (TTL + 1) * 1000,
  );
  const inspected = JSON.parse(ok(await c.host(2).netctx("inspect", "s1"), "inspect")) as ContextView;
  assert.equal(inspected.node, "h2");
  // Each host leased 3 blocks (2 v4 + 1 v6) for 16 creates: the other creates sent etcd nothing.
  const s1 = await stats(c.host(1));
  assert.equal(s1.creates, 16);
  assert.ok(s1.blockLeases === 3, JSON.stringify(s1));
  // rm of the network is refused while blocks are leased anywhere.
  assert.match(oneLine(await c.host(3).netctx("network", "rm", "ov")), /is in use/);
});

test("kill -9 and restart of an engine: it keeps its blocks; cluster forget frees them at once", async () => {
  const h3 = c.host(3);
  const before = (await blocks(c.host(1), "ov")).filter((b) => b.node === "h3").map((b) => b.cidr);
  await h3.engine!.kill9();
  await sleep((TTL + 1) * 1000);
  await h3.startEngine("--node-ttl", String(TTL));
  const made = JSON.parse(
    ok(
      await h3.netctx("create", "back", "--level", "socket", "--network", "ov", "--json"),
      "create after restart",
    ),
  ) as ContextView;
  assert.ok(
    made.addresses.every((a) => before.some((b) => inBlock(b, a))),
    `${made.addresses} outside ${before}`,
  );
  assert.deepEqual(
    (await blocks(c.host(1), "ov"))
      .filter((b) => b.node === "h3")
      .map((b) => b.cidr)
      .sort(),
    [...before].sort(),
  );
  await h3.engine!.kill9();
  const forgot = ok(await c.host(1).netctx("cluster", "forget", "h3"), "forget");
  assert.match(forgot, new RegExp(`freed ${before.length} block`));
  assert.deepEqual(
    (await blocks(c.host(1), "ov")).filter((b) => b.node === "h3"),
    [],
  );
  // h3 comes back with addresses in those blocks: it claims them again (nobody took them meanwhile).
  await h3.startEngine("--node-ttl", String(TTL));
  await until(
    "h3 holds its blocks again",
    async () => (await blocks(c.host(1), "ov")).filter((b) => b.node === "h3").length === before.length,
    8000,
  );
});

test("etcd stopped: overlay operations fail in one line within 5 s, a create inside a block with room works; etcd back: converges", async () => {
  // A network h2 holds no block of yet, mirrored everywhere before etcd goes.
  await until("ovb on h2", () => listed(c.host(2), "ovb"), 5000);
  await Promise.all([1, 2, 3].map((i) => c.stopEtcd(i)));
  const [made, madeMs] = await timed(
    c.host(1).netctx("network", "create", "ov2", "--driver", "overlay", "--subnet", "10.73.0.0/16"),
  );
  assert.match(oneLine(made), /^error: etcd at http:\/\/192\.168\.77\.1:2379,.*: /);
  assert.ok(madeMs < 5000, `${madeMs} ms`);
  const [needsBlock, blockMs] = await timed(
    c.host(2).netctx("create", "nb", "--level", "socket", "--network", "ovb"),
  );
  assert.match(oneLine(needsBlock), /etcd/);
  assert.ok(blockMs < 5000, `${blockMs} ms`);
  const [removed, rmMs] = await timed(c.host(1).netctx("network", "rm", "ovb"));
  assert.match(oneLine(removed), /etcd/);
  assert.ok(rmMs < 5000, `${rmMs} ms`);
  // h1's blocks of ov have room: no etcd needed.
  const [inBlockRoom, roomMs] = await timed(
    c.host(1).netctx("create", "room", "--level", "socket", "--network", "ov"),
  );
  ok(inBlockRoom, "create with room");
  assert.ok(roomMs < 3000, `${roomMs} ms`);
  // Local networks are not affected.
  ok(
    await c.host(2).netctx("network", "create", "lan", "--driver", "host", "--subnet", "10.95.0.0/24"),
    "local",
  );
  ok(await c.host(2).netctx("create", "l1", "--level", "socket", "--network", "lan"), "local create");

  await Promise.all([1, 2, 3].map((i) => c.startEtcd(i)));
  await c.etcdHealthy();
  // The engines were never restarted: their mirror passes succeed again (the etcd client skips members that failed
  // for 5 s after they are back: its circuit breaker), then a network made now reaches every mirror, a removal too.
  for (const i of [1, 2, 3])
    await until(
      `h${i}'s mirror pass succeeds`,
      async () => {
        const r = await c.host(i).netctx("cluster", "status", "--json");
        if (r.code !== 0) return false;
        const o = (JSON.parse(r.stdout) as { overlay: OverlayStats }).overlay;
        return o.syncError === undefined;
      },
      15_000,
    );
  ok(
    await c.host(1).netctx("network", "create", "ov2", "--driver", "overlay", "--subnet", "10.73.0.0/16"),
    "ov2",
  );
  for (const i of [2, 3]) await until(`ov2 on h${i}`, () => listed(c.host(i), "ov2"), 8000);
  ok(await c.host(3).netctx("network", "rm", "ovb"), "rm ovb");
  for (const i of [1, 2])
    await until(`ovb gone from h${i}`, async () => !(await listed(c.host(i), "ovb")), 8000);
  ok(
    await c.host(2).netctx("create", "nb", "--level", "socket", "--network", "ov2"),
    "create needing a block",
  );
});
