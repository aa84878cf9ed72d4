/** The etcd key layout (src/cluster/keys.ts) and the cluster settings an engine starts with (src/config.ts). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { blockCidr, blockKey, nodeKey, nodeOfKey, prefixEnd } from "../../src/cluster/keys.ts";
import { readConfig } from "../../src/config.ts";

test("keys: one versioned root, a block's CIDR is one segment and reads back", () => {
  assert.equal(nodeKey("h1"), "/netctx/v1/nodes/h1");
  assert.equal(nodeOfKey(nodeKey("h1")), "h1");
  assert.equal(blockKey("ov", "10.88.3.0/24"), "/netctx/v1/blocks/ov/10.88.3.0_24");
  assert.equal(blockCidr(blockKey("ov", "fd88:0:0:3::/64")), "fd88:0:0:3::/64");
  assert.equal(prefixEnd("/netctx/v1/nodes/").toString(), "/netctx/v1/nodes0");
});

test("cluster settings: defaults, variables under options, bad values named by their option", () => {
  assert.equal(readConfig({}).cluster, undefined, "no etcd: a lone host");
  const c = readConfig({ NETCTX_ETCD: "http://10.0.0.1:2379, http://[fd00::1]:2379", NETCTX_NODE: "n1" })
    .cluster!;
  assert.deepEqual(c.endpoints, ["http://10.0.0.1:2379", "http://[fd00::1]:2379"]);
  assert.equal(c.nodeName, "n1");
  assert.equal(c.nodeTtl, 10);
  assert.equal(c.underlay, undefined);
  const o = readConfig(
    { NETCTX_ETCD: "http://10.0.0.1:2379", NETCTX_NODE_TTL: "30" },
    { etcd: "https://10.0.0.2:2379", nodeTtl: "3", underlay: "fd77::1", etcdCacert: "/ca" },
  ).cluster!;
  assert.deepEqual(
    [o.endpoints, o.nodeTtl, o.underlay, o.tls.caFile],
    [["https://10.0.0.2:2379"], 3, "fd77::1", "/ca"],
  );
  const bad: [Record<string, string>, RegExp][] = [
    [{ NETCTX_ETCD: "10.0.0.1:2379" }, /^etcd: "10.0.0.1:2379" is not/],
    [{ NETCTX_ETCD: "http://10.0.0.1" }, /^etcd: .*not an etcd client URL/],
    [{ NETCTX_ETCD: "http://e:2379", NETCTX_NODE_TTL: "1" }, /^node-ttl: "1" is not a number of seconds/],
    [{ NETCTX_ETCD: "http://e:2379", NETCTX_NODE: "a/b" }, /^node: "a\/b" is not a node name/],
    [{ NETCTX_ETCD: "http://e:2379", NETCTX_UNDERLAY: "eth0" }, /^underlay: "eth0" is not an IPv4/],
    [
      { NETCTX_ETCD: "http://e:2379", NETCTX_ETCD_CERT: "/c" },
      /^etcd-cert: --etcd-cert and --etcd-key go together/,
    ],
  ];
  for (const [env, message] of bad) assert.throws(() => readConfig(env), { message }, JSON.stringify(env));
});
