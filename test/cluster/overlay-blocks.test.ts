/** Block arithmetic (cluster/blocks.ts) and the data path's peer list (cluster/peers.ts peersOf), without etcd. */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  blockAt,
  blockCount,
  blockGateway,
  blockHolds,
  blockLength,
  freeBlock,
  subnetOfBlock,
} from "../../src/cluster/blocks.ts";
import type { BlockRecord, NodeRecord } from "../../src/cluster/node-record.ts";
import { lowestFreeVni } from "../../src/cluster/overlay-state.ts";
import { peersOf } from "../../src/cluster/peers.ts";
import { parseSubnet } from "../../src/net/cidr.ts";

const v4 = parseSubnet("10.70.0.0/16", "s");
const v6 = parseSubnet("fd70::/48", "s");

test("block lengths: /24 and /64 by default, --block for IPv4, longer blocks for small subnets, refusals", () => {
  assert.equal(blockLength(v4), 24);
  assert.equal(blockLength(v6), 64);
  assert.equal(blockLength(v4, 28), 28);
  assert.equal(blockLength(v6, 28), 64, "--block is the IPv4 length");
  assert.equal(blockLength(parseSubnet("10.1.0.0/24", "s")), 26);
  assert.equal(blockLength(parseSubnet("fd00::/64", "s")), 66);
  assert.equal(blockLength(parseSubnet("10.1.0.0/29", "s")), 30);
  assert.throws(() => blockLength(v4, 12), /\/12 does not fit 10\.70\.0\.0\/16: a block is \/16 to \/30/);
  assert.throws(() => blockLength(v4, 31), /a block is \/16 to \/30/);
  assert.throws(() => blockLength(parseSubnet("10.1.0.0/31", "s")), /too small/);
});

test("blocks are aligned, counted and found free lowest first", () => {
  assert.equal(blockCount(v4, 24), 256n);
  assert.equal(blockAt(v4, 24, 0n), "10.70.0.0/24");
  assert.equal(blockAt(v4, 28, 17n), "10.70.1.16/28");
  assert.equal(blockAt(v6, 64, 3n), "fd70:0:0:3::/64");
  assert.equal(freeBlock(v4, 24, []), "10.70.0.0/24");
  assert.equal(freeBlock(v4, 24, ["10.70.0.0/24", "10.70.2.0/24"]), "10.70.1.0/24");
  assert.equal(freeBlock(v4, 24, ["10.70.0.0/24"], 2), "10.70.3.0/24", "skip passes over free blocks");
  const small = parseSubnet("10.1.0.0/25", "s");
  assert.equal(freeBlock(small, 26, ["10.1.0.0/26", "10.1.0.64/26"]), undefined);
  assert.equal(freeBlock(small, 26, ["10.1.0.0/26"], 5), "10.1.0.64/26", "skip past the end: the first free");
});

test("a block's gateway is its first host; holding and subnet lookups", () => {
  assert.equal(blockGateway("10.70.3.0/24"), "10.70.3.1");
  assert.equal(blockGateway("fd70:0:0:3::/64"), "fd70:0:0:3::1");
  assert.ok(blockHolds("10.70.3.0/24", "10.70.3.77/24"));
  assert.ok(!blockHolds("10.70.3.0/24", "10.70.4.1"));
  assert.ok(!blockHolds("10.70.3.0/24", "fd70::1"));
  assert.equal(subnetOfBlock(["10.70.0.0/16", "fd70::/48"], "fd70:0:0:9::/64"), "fd70::/48");
  assert.equal(subnetOfBlock(["10.70.0.0/16"], "10.71.0.0/24"), undefined);
});

test("VNIs: the lowest free", () => {
  assert.equal(lowestFreeVni([]), 1);
  assert.equal(lowestFreeVni([1, 2, 4]), 3);
});

function node(name: string, underlay: string, vtepMac = `02:00:00:00:00:0${name.at(-1)}`): NodeRecord {
  return {
    name,
    underlay,
    vtepMac,
    blocks: [],
    contexts: 0,
    ttl: 10,
    registeredAt: "2026-01-01T00:00:00Z",
    version: "0.1.0",
  };
}

function block(n: string, network: string, cidr: string): BlockRecord {
  return { node: n, network, cidr, since: "2026-01-01T00:00:00Z" };
}

test("peersOf: every other live node with blocks of the network, its blocks sorted; gone nodes and other networks left out", () => {
  const nodes = [node("h1", "192.168.77.1"), node("h3", "192.168.77.3"), node("h2", "192.168.77.2")];
  const blocks = [
    block("h1", "ov", "10.70.0.0/24"),
    block("h2", "ov", "10.70.2.0/24"),
    block("h2", "ov", "10.70.1.0/24"),
    block("h3", "other", "10.80.0.0/24"),
    block("h9", "ov", "10.70.9.0/24"), // h9 has no record: gone, in its grace period
  ];
  assert.deepEqual(peersOf("ov", nodes, blocks, "h1"), [
    {
      node: "h2",
      underlay: "192.168.77.2",
      vtepMac: "02:00:00:00:00:02",
      blocks: ["10.70.1.0/24", "10.70.2.0/24"],
    },
  ]);
  assert.deepEqual(
    peersOf("ov", nodes, blocks, "h2").map((p) => p.node),
    ["h1"],
  );
  assert.deepEqual(peersOf("ov", nodes, blocks, "h3", () => true)[0]?.direct, true);
  assert.deepEqual(peersOf("none", nodes, blocks, "h1"), []);
});

test("peersOf: a peer whose VTEP is not made yet is left out unless it is reached directly", () => {
  const nodes = [node("h1", "192.168.77.1"), node("h2", "192.168.77.2", "")];
  const blocks = [block("h2", "ov", "10.70.2.0/24")];
  assert.deepEqual(peersOf("ov", nodes, blocks, "h1"), []);
  assert.deepEqual(
    peersOf("ov", nodes, blocks, "h1", (u) => u === "192.168.77.2").map((p) => [p.node, p.direct]),
    [["h2", true]],
  );
});
