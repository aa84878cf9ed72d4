/**
 * `netctx apply FILE` with contexts on an overlay network (issue 18), on two test hosts with engines on one etcd
 * member (test/utils/cluster.ts). The apply runs in the engine (POST /v1/apply), which leases the blocks the file
 * needs (OverlayEngine.withBlocks) instead of failing with BlockNeeded, and says what it did in the lines an apply in
 * the CLI's own process prints. A dry run leases nothing and says a block would be leased; an overlay network
 * declared in the file is refused in one line.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { startCluster, stopCluster, type TestCluster } from "../utils/cluster.ts";
import {
  blocksOf,
  createContext,
  createOverlay,
  inspected,
  ok,
  oneLine,
  pingFrom,
} from "../utils/overlay-cli.ts";

const NET = "ap";
let c: TestCluster;

before(async () => {
  c = await startCluster({ hosts: 2, etcdHosts: [1] });
  await Promise.all([1, 2].map((i) => c.host(i).startEngine("--node-ttl", "3")));
  // /28 blocks: 13 addresses each for contexts (the first is the node's gateway).
  await createOverlay(c.host(1), c.hosts, NET, "--subnet", "10.84.0.0/16", "--block", "28");
});
after(() => stopCluster());

function sceneFile(name: string, scene: unknown): string {
  const path = join(c.scratch, `${name}.json`);
  writeFileSync(path, JSON.stringify(scene));
  return path;
}

const CONTEXTS = 16;
const scene = {
  name: "web",
  networks: [{ name: "apb", driver: "bridge", subnets: ["10.85.0.0/24"] }],
  contexts: [
    ...Array.from({ length: CONTEXTS }, (_, i) => ({
      name: `w${i + 1}`,
      level: i === 1 ? "l3" : i === 2 ? "socket" : "l2",
      networks: [NET],
    })),
    { name: "wb", level: "l2", networks: ["apb"] },
  ],
};

test("a dry run on a node with no block leases nothing and says the apply would", async () => {
  const file = sceneFile("dry", scene);
  const out = ok(await c.host(1).netctx("apply", "--dry-run", file), "dry run");
  assert.match(
    out,
    /^note: this node has no room in its address blocks of 10\.84\.0\.0\/16 \(network ap\): apply leases one in etcd/m,
  );
  assert.match(out, /^create network apb$/m);
  assert.match(out, /^create context w1$/m);
  assert.deepEqual(await blocksOf(c.host(1), NET), [], "no block leased");
  const ls = JSON.parse(ok(await c.host(1).netctx("ls", "--json"), "ls")) as unknown[];
  assert.equal(ls.length, 0, "nothing made");
});

test("apply of contexts on an overlay network on a node with no block: the engine leases the blocks it needs", async () => {
  const file = sceneFile("web", scene);
  const out = ok(await c.host(2).netctx("apply", file), "apply");
  const total = CONTEXTS + 2;
  const lines = out.trim().split("\n");
  assert.equal(lines[0], `[1/${total}] create network apb`);
  assert.equal(lines.at(-1), `[${total}/${total}] create context wb`);
  assert.equal(lines.length, total, out);
  // 16 contexts need two /28 blocks: both leased by h2.
  const blocks = await blocksOf(c.host(1), NET);
  assert.deepEqual(
    blocks.map((b) => b.node),
    ["h2", "h2"],
  );
  const made = await Promise.all(
    Array.from({ length: CONTEXTS }, (_, i) => inspected(c.host(2), `w${i + 1}`)),
  );
  const addresses = made.map((m) => m.v4);
  assert.equal(new Set(addresses).size, CONTEXTS, "distinct addresses");
  for (const a of addresses)
    assert.ok(
      blocks.some((b) => a.startsWith(b.cidr.split(".").slice(0, 3).join("."))),
      `${a} in one of h2's blocks`,
    );
  // On the wire: a context h1 makes reaches the applied ones across hosts, in both blocks.
  const x = await createContext(c.host(1), "x1", "l2", NET);
  assert.ok(await pingFrom(x, made[0]!.v4, 5), "x1 -> w1");
  assert.ok(await pingFrom(made.at(-1)!, x.v4, 5), `w${CONTEXTS} -> x1`);
  // The same file again: nothing to do.
  assert.equal(
    ok(await c.host(2).netctx("apply", file), "apply again").trim(),
    "nothing to do: the host matches the file",
  );
});

test("an apply file that declares an overlay network is refused in one line", async () => {
  const file = sceneFile("ov", {
    networks: [{ name: "ov2", driver: "overlay", subnets: ["10.86.0.0/16"] }],
    contexts: [{ name: "o1", level: "l2", networks: ["ov2"] }],
  });
  for (const args of [
    ["apply", file],
    ["apply", "--dry-run", file],
  ]) {
    const r = await c.host(2).netctx(...args);
    assert.notEqual(r.code, 0);
    assert.equal(
      oneLine(r),
      'error: networks[0].driver: network "ov2": overlay networks are made with `netctx network create ov2 --driver overlay` (they live in etcd, for every host): an apply file only puts contexts on them',
    );
  }
});

test("destroy through the engine removes what the scene made", async () => {
  const out = ok(await c.host(2).netctx("destroy", sceneFile("web", scene)), "destroy");
  assert.match(out, /^removed context w1$/m);
  assert.match(out, /^removed network apb$/m);
  const ls = JSON.parse(ok(await c.host(2).netctx("ls", "--json"), "ls")) as unknown[];
  assert.equal(ls.length, 0);
});
