/**
 * The dashboard's topology at 1000 contexts (web/dashboard/topology.ts, no browser needed): large networks draw as
 * one node per level until opened, no edge joins two contexts, every context is counted once, and the picture is
 * made in milliseconds.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { type ContextInfo, type ElementDef, topology } from "../../web/dashboard/topology.ts";

const LEVELS = ["l2", "l3", "socket"];
const networks = ["big", "mid", "small", "extra"].map((name) => ({ name, driver: "bridge", subnets: [] }));

/** 1000 contexts: 600 on big, 370 on mid, 30 on small; every 20th also on extra. */
function contexts(): ContextInfo[] {
  return Array.from({ length: 1000 }, (_, i) => {
    const home = i < 600 ? "big" : i < 970 ? "mid" : "small";
    return {
      name: `c${i}`,
      level: LEVELS[i % 3]!,
      status: "ready",
      networks: i % 20 === 0 ? [home, "extra"] : [home],
      addresses: [`10.0.${i >> 8}.${i & 255}/16`],
    };
  });
}

const nodes = (els: ElementDef[]) => els.filter((e) => e.group === "nodes");
const edges = (els: ElementDef[]) => els.filter((e) => e.group === "edges");

test("1000 contexts draw as a few dozen elements, every context counted once, no context-to-context edge", () => {
  const all = contexts();
  const started = performance.now();
  const els = topology(all, networks, { node: "h1", expanded: new Set(), collapseAbove: 30 });
  const ms = performance.now() - started;
  assert.ok(els.length < 60, `${els.length} elements`);
  assert.ok(ms < 50, `${ms.toFixed(1)} ms`);
  // big and mid: one group per level; small (30) shows its contexts one by one.
  const groups = nodes(els).filter((e) => e.classes?.startsWith("group"));
  assert.deepEqual(groups.map((g) => g.data.id).sort(), [
    "grp:h1/big/l2",
    "grp:h1/big/l3",
    "grp:h1/big/socket",
    "grp:h1/mid/l2",
    "grp:h1/mid/l3",
    "grp:h1/mid/socket",
  ]);
  const singles = nodes(els).filter((e) => e.classes?.startsWith("context"));
  assert.equal(groups.reduce((n, g) => n + Number(g.data.count), 0) + singles.length, 1000);
  assert.ok(singles.every((s) => s.data.parent === "net:h1/small"));
  const contextIds = new Set(singles.map((s) => s.data.id));
  for (const e of edges(els)) {
    assert.ok(
      !(contextIds.has(e.data.source as string) && contextIds.has(e.data.target as string)),
      String(e.data.id),
    );
    assert.equal(e.data.target, "net:h1/extra");
  }
  // Second attachments merge per drawn node: 30 on big (10 per group), 19 on mid, 1 single on small (c980).
  assert.equal(edges(els).length, 3 + 3 + 1);
  assert.ok(
    nodes(els).every((n) => n.classes === "host" || n.classes === "network" || n.position),
    "placed",
  );
});

test("an opened network shows its contexts one by one, none on top of another", () => {
  const els = topology(contexts(), networks, { node: "h1", expanded: new Set(["big"]), collapseAbove: 30 });
  const big = nodes(els).filter((e) => e.data.parent === "net:h1/big");
  assert.equal(big.length, 600);
  assert.ok(big.every((e) => e.classes?.startsWith(`context level-${e.data.level}`)));
  const spots = new Set(big.map((e) => `${e.position!.x},${e.position!.y}`));
  assert.equal(spots.size, 600);
});

test("the cluster's other nodes: a host each with its overlay networks, one edge per network and node", () => {
  const local = [
    { name: "pn", driver: "overlay", subnets: [] },
    { name: "lan", driver: "bridge", subnets: [] },
  ];
  const els = topology(
    contexts()
      .slice(0, 3)
      .map((c) => ({ ...c, networks: ["pn"] })),
    local,
    {
      node: "h1",
      expanded: new Set(),
      collapseAbove: 30,
      peers: [
        { name: "h2", underlay: "192.168.77.2", contexts: 4, networks: ["pn"] },
        { name: "h3", underlay: "192.168.77.3", contexts: 0, networks: [] },
      ],
    },
  );
  const hosts = nodes(els).filter((e) => e.classes?.startsWith("host"));
  assert.deepEqual(
    hosts.map((h) => h.data.label),
    ["h1", "h2 · 192.168.77.2 · 4 contexts", "h3 · 192.168.77.3 · 0 contexts"],
  );
  assert.equal(nodes(els).find((e) => e.data.id === "net:h2/pn")?.data.parent, "host:h2");
  assert.deepEqual(
    edges(els).map((e) => [e.data.source, e.data.target]),
    [["net:h1/pn", "net:h2/pn"]],
  );
  assert.ok(hosts[2]!.position, "a node without networks is placed");
});
