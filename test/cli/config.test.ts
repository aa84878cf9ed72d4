/**
 * Settings: one Config read from the environment at the edge (src/config.ts). The variable names and defaults are
 * the ones netctx has always had, and --state-dir goes over NETCTX_STATE_DIR without touching the environment.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readConfig } from "../../src/config.ts";
import { netctxJson } from "../utils/cli.ts";

test("without variables: the defaults", () => {
  const c = readConfig({});
  assert.equal(c.stateDir, "/var/lib/netctx");
  assert.equal(c.socketPath, "/var/lib/netctx/netctx.sock");
  assert.equal(c.cgroupParent, undefined);
  assert.equal(c.publishCgroup, undefined);
  assert.equal(c.bridgeSegmentPorts, 128);
  assert.equal(c.nftBinary, false);
  assert.equal(c.pauseAt, undefined);
  assert.match(c.toolEnv.PATH ?? "", /:\/usr\/local\/sbin:.*\/usr\/sbin:.*\/sbin:/);
});

test("each variable sets its field; --state-dir goes over NETCTX_STATE_DIR", () => {
  const env = {
    NETCTX_STATE_DIR: "/s",
    NETCTX_CGROUP_PARENT: "/cg/p",
    NETCTX_BRIDGE_SEGMENT_PORTS: "3",
    NETCTX_NFT_BINARY: "1",
    NETCTX_PAUSE_AT: "create:after-netns, rm:after-mark",
    PATH: "/bin",
  };
  const c = readConfig(env);
  assert.equal(c.stateDir, "/s");
  assert.equal(c.socketPath, "/s/netctx.sock");
  assert.equal(c.cgroupParent, "/cg/p");
  assert.equal(c.publishCgroup, "/cg/p", "the publish cgroup follows the cgroup parent");
  assert.equal(c.bridgeSegmentPorts, 3);
  assert.equal(c.nftBinary, true);
  assert.deepEqual([...(c.pauseAt ?? [])], ["create:after-netns", "rm:after-mark"]);
  assert.ok(c.toolEnv.PATH?.startsWith("/bin:"));
  const over = readConfig(
    { ...env, NETCTX_SOCKET: "/e.sock", NETCTX_PUBLISH_CGROUP: "/pub" },
    { stateDir: "/o" },
  );
  assert.equal(over.stateDir, "/o");
  assert.equal(over.socketPath, "/e.sock");
  assert.equal(over.publishCgroup, "/pub");
  assert.equal(readConfig(env, { stateDir: "/o" }).socketPath, "/o/netctx.sock");
  assert.equal(readConfig({ NETCTX_BRIDGE_SEGMENT_PORTS: "0" }).bridgeSegmentPorts, 128);
});

test("netctx --state-dir opens the store there, not in $NETCTX_STATE_DIR", () => {
  const dir = join(mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH ?? "/tmp", "state-dir-")), "state");
  assert.deepEqual(netctxJson("--state-dir", dir, "network", "ls", "--json"), []);
  assert.ok(existsSync(join(dir, "netctx.db")));
  // Nothing in this file runs netctx without --state-dir: the runner's state dir stays untouched.
  assert.ok(!existsSync(join(process.env.NETCTX_STATE_DIR!, "netctx.db")));
});
