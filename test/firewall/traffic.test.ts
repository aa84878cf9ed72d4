/** NAT and internal proven on the wire: ping and a TCP echo that reports the source address it saw. */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, test } from "node:test";
import { Firewall } from "../../src/firewall/firewall.ts";
import { sh } from "../utils/shell.ts";
import { buildRouted, buildTopology, echoFrom, ping, startEcho } from "./topology.ts";

const fw = new Firewall();
const front = { name: "front", subnets: ["10.50.0.0/24", "fd50::/64"], nat: true, internal: false };
const servers: ChildProcess[] = [];

before(async () => {
  buildTopology();
  buildRouted();
  servers.push(await startEcho("out"), await startEcho("c2"), await startEcho("r2"));
});

after(() => {
  for (const s of servers) if (s.pid !== undefined && s.exitCode === null) process.kill(s.pid);
  fw.removeAll();
});

test("without our table there is no way out: the outside has no route back", () => {
  assert.equal(ping("c1", "10.200.0.2"), false);
  assert.equal(echoFrom("c1", "10.200.0.2"), null);
});

test("nat on: v4 and v6 leave masqueraded as the host's outside address", () => {
  fw.addNetwork(front);
  fw.addInterface("front", "br-front");
  assert.equal(ping("c1", "10.200.0.2"), true);
  assert.equal(echoFrom("c1", "10.200.0.2"), "10.200.0.1");
  assert.equal(ping("c1", "fd00:200::2"), true);
  assert.equal(echoFrom("c1", "fd00:200::2"), "fd00:200::1");
  // Inside the network nothing is rewritten (br_netfilter, loaded here, shows bridged frames to our chains).
  assert.equal(echoFrom("c1", "10.50.0.3"), "10.50.0.2");
  assert.equal(echoFrom("c1", "fd50::3"), "fd50::2");
  assert.equal(ping("c1", "10.50.0.3"), true);
  assert.equal(ping("c1", "10.50.0.1"), true);
});

test("nat off: re-adding the network without NAT stops egress", () => {
  fw.addNetwork({ ...front, nat: false });
  assert.equal(ping("c1", "10.200.0.2"), false);
  assert.equal(ping("c1", "fd00:200::2"), false);
  assert.deepEqual(fw.elements().find((s) => s.set === "nat4")?.elements, []);
  fw.addNetwork(front);
  assert.equal(ping("c1", "10.200.0.2"), true);
});

test("internal: no egress, the gateway and the other context stay reachable, the host is unaffected", () => {
  fw.addNetwork({ ...front, internal: true });
  assert.equal(ping("c1", "10.200.0.2"), false);
  assert.equal(ping("c1", "fd00:200::2"), false);
  assert.equal(echoFrom("c1", "10.200.0.2"), null);
  assert.equal(ping("c1", "10.50.0.1"), true);
  assert.equal(ping("c1", "fd50::1"), true);
  assert.equal(ping("c1", "10.50.0.3"), true);
  assert.equal(ping("c1", "fd50::3"), true);
  assert.equal(ping(null, "10.200.0.2"), true);
  assert.equal(ping(null, "10.50.0.2"), true);
});

test("internal: removing the interface restores egress, adding it back blocks it again", () => {
  fw.removeInterface("front", "br-front");
  assert.equal(ping("c1", "10.200.0.2"), true);
  assert.equal(echoFrom("c1", "10.200.0.2"), "10.200.0.1");
  fw.addInterface("front", "br-front");
  assert.equal(ping("c1", "10.200.0.2"), false);
});

test("internal: the outside cannot reach into the network either", () => {
  fw.addNetwork({ ...front, internal: false, nat: false });
  // Give the outside a route in; without `internal` the context answers.
  sh("ip -n out route add 10.50.0.0/24 via 10.200.0.1");
  try {
    assert.equal(ping("out", "10.50.0.2"), true);
    fw.addNetwork({ ...front, internal: true, nat: false });
    assert.equal(ping("out", "10.50.0.2"), false);
  } finally {
    sh("ip -n out route del 10.50.0.0/24 via 10.200.0.1");
  }
});

test("removing the network restores the state before it: no NAT, no drop", () => {
  fw.removeNetwork("front");
  for (const s of fw.elements()) assert.deepEqual(s.elements, [], s.set);
  assert.equal(ping("c1", "10.200.0.2"), false);
  assert.equal(ping("c1", "10.50.0.3"), true);
});

test("routed network: context to context is not NATed, context to outside is", () => {
  fw.begin();
  fw.addNetwork({ name: "routed", subnets: ["10.60.0.0/24"], nat: true, internal: false });
  fw.addInterface("routed", "v-r1");
  fw.addInterface("routed", "v-r2");
  fw.commit();
  assert.equal(echoFrom("r1", "10.60.0.6"), "10.60.0.5");
  assert.equal(echoFrom("r1", "10.200.0.2"), "10.200.0.1");
});

test("routed network, internal: the other context yes, the outside no", () => {
  fw.addNetwork({ name: "routed", subnets: ["10.60.0.0/24"], nat: true, internal: true });
  assert.equal(echoFrom("r1", "10.60.0.6"), "10.60.0.5");
  assert.equal(ping("r1", "10.60.0.6"), true);
  assert.equal(ping("r1", "10.200.0.2"), false);
  assert.equal(ping("r1", "10.60.0.1"), true);
  // Only the other context's interface of this network counts: with v-r2 gone from it, r1 cannot reach r2.
  fw.removeInterface("routed", "v-r2");
  assert.equal(ping("r1", "10.60.0.6"), false);
});

test("our chains keep working next to a foreign table with its own forward and nat chains", () => {
  sh(`nft -f - <<'EOF2'
table inet other {
  chain my_forward { type filter hook forward priority -10; policy accept; ip saddr 10.50.0.0/24 counter; }
  chain my_post { type nat hook postrouting priority 50; policy accept; ip saddr 10.99.0.0/16 masquerade; }
}
EOF2`);
  try {
    fw.addNetwork(front);
    fw.addInterface("front", "br-front");
    assert.equal(echoFrom("c1", "10.200.0.2"), "10.200.0.1");
    assert.match(sh("nft list chain inet other my_forward"), /counter packets [1-9]/);
    fw.addNetwork({ ...front, internal: true });
    assert.equal(ping("c1", "10.200.0.2"), false);
  } finally {
    sh("nft delete table inet other");
  }
});
