/**
 * A failed `network create` undoes only what it made (issue 17). With a NAT network appnet and a context in it, a
 * create that fails right after its firewall step (an injected failure, NETCTX_FAIL_AT: the real in-process undo,
 * which a SIGKILL never reaches) leaves the nft ruleset byte for byte as it was, store and kernel too, and appnet's
 * context still reaches the outside through NAT. The undo takes elements by the network's name only: that it never
 * takes another network's on the same subnets is test/firewall/firewall.test.ts's ("removeNetwork takes only ...").
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, test } from "node:test";
import { FAIL_ENV, FAIL_MESSAGE } from "../../src/pause.ts";
import { NETCTX, netctxJson, netctxOk } from "../utils/cli.ts";
import { nftRuleset } from "../utils/kernel-oracle.ts";
import { addVethNetns, delVethNetns } from "../utils/netns.ts";
import { operatorDump } from "../utils/operator-dump.ts";
import { ping } from "../utils/ping.ts";

/** A namespace outside the host with no route back to appnet: only a masqueraded ping gets an answer. */
const OUTSIDE = { name: "outside", hostIfname: "up0" };
const STEP = "network-create:after-firewall";

let c1Netns: string;

before(() => {
  addVethNetns({ ...OUTSIDE, hostAddresses: ["203.0.113.1/24"], addresses: ["203.0.113.2/24"] });
  netctxOk("network", "create", "appnet", "--driver", "bridge", "--subnet", "10.20.0.0/24", "--nat");
  netctxOk("create", "c1", "--level", "l2", "--network", "appnet");
  c1Netns = netctxJson<{ netns: string }>("inspect", "c1").netns;
  assert.ok(ping(c1Netns, "203.0.113.2", { tries: 3 }), "appnet's egress works to begin with");
});

after(() => {
  delVethNetns(OUTSIDE);
});

for (const [driver, nat] of [
  ["bridge", ["--nat"]],
  ["routed", ["--nat"]],
  ["bridge", ["--internal"]],
] as const) {
  test(`a ${driver} network create (${nat.join(" ")}) failing after its firewall step leaves the ruleset and appnet's egress as they were`, () => {
    const nft = nftRuleset();
    const dump = operatorDump();
    const r = spawnSync(
      NETCTX,
      ["network", "create", "zz", "--driver", driver, "--subnet", "10.21.0.0/24", ...nat],
      { encoding: "utf8", timeout: 60_000, env: { ...process.env, [FAIL_ENV]: STEP } },
    );
    assert.notEqual(r.status, 0, "the create failed");
    assert.equal(r.stderr.trim(), `error: ${FAIL_MESSAGE}${STEP}`, "at the step it was told to");
    assert.equal(nftRuleset(), nft, "nft -j list ruleset is byte for byte as before");
    const now = operatorDump();
    assert.equal(now.state, dump.state, "no record of zz, appnet's as it was");
    assert.equal(now.kernel, dump.kernel, "no device of zz, nothing else changed");
    assert.ok(
      ping(c1Netns, "203.0.113.2", { tries: 2 }),
      "appnet's context still reaches the outside through NAT",
    );
  });
}
