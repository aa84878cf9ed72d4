/**
 * The policy compiler (src/engine/policy-compile.ts) against the decision rule of src/model/policy-tables.ts. Each
 * test guards one rule of the compiler: it reads the tables directly where the rule is about the tables' shape
 * (bits, spreading, groups), and asks the rule itself (decide.ts) where it is about who reaches whom.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { compilePolicies, type PolicyContext } from "../../src/engine/policy-compile.ts";
import { type PolicyInput, type PolicyRecord, policyRecordOf } from "../../src/model/policy.ts";
import { MAX_POLICIES } from "../../src/model/policy-tables.ts";
import type { NetworkRecord } from "../../src/model/records.ts";
import { allowed, lookup } from "./decide.ts";

function net(
  name: string,
  cidr: string,
  gateway: string,
  options: Record<string, unknown> = {},
): NetworkRecord {
  return {
    name,
    driver: "bridge",
    subnets: [{ cidr, gateway }],
    nat: false,
    internal: false,
    mtu: 1500,
    options,
  };
}

function ctx(
  name: string,
  addresses: Record<string, string[]>,
  labels: Record<string, string> = {},
): PolicyContext {
  return {
    name,
    labels,
    attachments: Object.entries(addresses).map(([network, list]) => ({ network, addresses: list })),
  };
}

const pol = (input: PolicyInput): PolicyRecord => policyRecordOf(input);

const front = net("front", "10.1.0.0/24", "10.1.0.1");
const back = net("back", "10.2.0.0/24", "10.2.0.1");
const web = ctx("web", { front: ["10.1.0.2/24"] }, { app: "web", tier: "front" });
const api = ctx("api", { front: ["10.1.0.3/24"], back: ["10.2.0.3/24"] }, { app: "api", tier: "front" });
const db = ctx("db", { back: ["10.2.0.4/24", "fd02::4/64"] }, { app: "db" });
const contexts = [web, api, db];
const networks = [front, back];

test("no policy and no switch: every packet passes", () => {
  const t = compilePolicies({ policies: [], contexts, networks });
  assert.equal(t.anyPort, 0n);
  assert.ok(t.addresses.every((e) => !e.ingressSelected && !e.egressSelected && e.isolateGroup === 0));
  assert.ok(allowed(t, "10.1.0.2", "10.2.0.4"));
});

test("a policy's bit is its place in the policies ordered by name, whatever order they come in", () => {
  const policies = [
    pol({ name: "zeta", to: "db", from: "api" }),
    pol({ name: "alpha", to: "db", from: "web" }),
  ];
  const t = compilePolicies({ policies, contexts, networks });
  assert.equal(lookup(t, "10.1.0.2").ingressFrom, 1n, "alpha (first by name) is bit 0");
  assert.equal(lookup(t, "10.2.0.3").ingressFrom, 2n, "zeta is bit 1");
  assert.equal(lookup(t, "10.2.0.4").ingressTo, 3n);
  const again = compilePolicies({ policies: [...policies].reverse(), contexts, networks });
  assert.deepEqual(again, t);
});

test("ingress: --to contexts are selected and accept only from --from; others stay open", () => {
  const t = compilePolicies({ policies: [pol({ name: "p", to: "db", from: "api" })], contexts, networks });
  const d = lookup(t, "10.2.0.4");
  assert.equal(d.ingressSelected, true);
  assert.equal(lookup(t, "fd02::4").ingressSelected, true, "every address of the context");
  assert.equal(lookup(t, "10.2.0.3").ingressSelected, false, "the --from side is not selected");
  assert.ok(allowed(t, "10.2.0.3", "10.2.0.4"));
  assert.ok(allowed(t, "10.1.0.3", "10.2.0.4"), "from api's other address too: the selector is the context");
  assert.ok(!allowed(t, "10.1.0.2", "10.2.0.4"), "web is not allowed");
  assert.ok(allowed(t, "10.2.0.4", "10.1.0.2"), "db sends freely: no egress policy selects it");
  assert.ok(allowed(t, "10.1.0.2", "10.2.0.3"), "api is not selected");
  assert.equal(d.egressSelected, false);
});

test("egress: --from contexts are selected and may send only to --to", () => {
  const t = compilePolicies({
    policies: [pol({ name: "p", to: "db", from: "web", egress: true })],
    contexts,
    networks,
  });
  assert.equal(lookup(t, "10.1.0.2").egressSelected, true);
  assert.equal(lookup(t, "10.2.0.4").egressSelected, false);
  assert.equal(lookup(t, "10.2.0.4").ingressSelected, false);
  assert.ok(allowed(t, "10.1.0.2", "10.2.0.4"));
  assert.ok(!allowed(t, "10.1.0.2", "10.2.0.3"));
  assert.ok(!allowed(t, "10.1.0.2", "192.0.2.1"), "nor to the world");
  assert.ok(allowed(t, "10.2.0.3", "10.1.0.2"), "others still reach web");
});

test("a label selector matches the contexts that hold every pair", () => {
  const t = compilePolicies({
    policies: [pol({ name: "p", to: "db", from: "tier=front,app=api" })],
    contexts,
    networks,
  });
  assert.ok(allowed(t, "10.1.0.3", "10.2.0.4"));
  assert.ok(!allowed(t, "10.1.0.2", "10.2.0.4"), "web has tier=front but not app=api");
  const one = compilePolicies({
    policies: [pol({ name: "p", to: "db", from: "tier=front" })],
    contexts,
    networks,
  });
  assert.ok(allowed(one, "10.1.0.2", "10.2.0.4"));
});

test("a CIDR selector spreads its bits into the contexts and gateways inside it, and only those", () => {
  const t = compilePolicies({
    policies: [pol({ name: "p", to: "db", from: "10.1.0.0/24" })],
    contexts,
    networks,
  });
  assert.equal(lookup(t, "10.1.0.2").ingressFrom, 1n, "web, inside");
  assert.equal(lookup(t, "10.1.0.1").ingressFrom, 1n, "front's gateway, inside");
  assert.equal(lookup(t, "10.2.0.3").ingressFrom, 0n, "api's back address, outside");
  assert.ok(
    t.addresses.some((e) => e.cidr === "10.1.0.0/24"),
    "the CIDR has its own entry",
  );
  assert.ok(allowed(t, "10.1.0.77", "10.2.0.4"), "an address no context holds, inside");
  assert.ok(!allowed(t, "10.2.0.3", "10.2.0.4"));
  assert.ok(!allowed(t, "192.0.2.1", "10.2.0.4"));
});

test("world is 0.0.0.0/0 and ::/0 and does not spread into contexts or gateways", () => {
  const t = compilePolicies({ policies: [pol({ name: "p", to: "db", from: "world" })], contexts, networks });
  assert.equal(lookup(t, "192.0.2.1").cidr, "0.0.0.0/0");
  assert.equal(lookup(t, "2001:db8::1").cidr, "::/0");
  assert.ok(allowed(t, "192.0.2.1", "10.2.0.4"));
  assert.ok(allowed(t, "2001:db8::1", "fd02::4"));
  assert.ok(!allowed(t, "10.1.0.2", "10.2.0.4"), "a context is not the world");
  assert.ok(!allowed(t, "10.2.0.1", "10.2.0.4"), "nor is the host's gateway");
});

test("world reaches into the entries CIDR selectors add, not into contexts there", () => {
  const t = compilePolicies({
    policies: [
      pol({ name: "a", to: "db", from: "world" }),
      pol({ name: "b", to: "web", from: "10.9.0.0/16" }),
    ],
    contexts,
    networks,
  });
  assert.ok(allowed(t, "10.9.1.1", "10.2.0.4"), "10.9.1.1 is still the world to db");
  assert.ok(allowed(t, "10.9.1.1", "10.1.0.2"));
  assert.ok(!allowed(t, "192.0.2.1", "10.1.0.2"));
});

test("host is every network's gateway, and gateways carry the gateway flag", () => {
  const t = compilePolicies({ policies: [pol({ name: "p", to: "db", from: "host" })], contexts, networks });
  assert.equal(lookup(t, "10.1.0.1").gateway, true);
  assert.equal(lookup(t, "10.2.0.1").gateway, true);
  assert.equal(lookup(t, "10.2.0.4").gateway, false);
  assert.ok(allowed(t, "10.2.0.1", "10.2.0.4"));
  assert.ok(allowed(t, "10.1.0.1", "10.2.0.4"));
  assert.ok(!allowed(t, "10.2.0.3", "10.2.0.4"));
});

test("network:NAME is its contexts; an unknown name matches nothing", () => {
  const t = compilePolicies({
    policies: [pol({ name: "p", to: "db", from: "network:front" })],
    contexts,
    networks,
  });
  assert.ok(allowed(t, "10.1.0.2", "10.2.0.4"));
  assert.ok(allowed(t, "10.2.0.3", "10.2.0.4"), "api as a whole: it is on front");
  assert.ok(!allowed(t, "10.1.0.1", "10.2.0.4"), "the gateway is the host, not a member");
  const none = compilePolicies({
    policies: [pol({ name: "p", to: "db", from: "network:nope" })],
    contexts,
    networks,
  });
  assert.equal(lookup(none, "10.2.0.4").ingressSelected, true);
  assert.ok(!allowed(none, "10.1.0.2", "10.2.0.4"));
  const nobody = compilePolicies({
    policies: [pol({ name: "p", to: "ghost", from: "web" })],
    contexts,
    networks,
  });
  assert.ok(
    nobody.addresses.every((e) => !e.ingressSelected),
    "a missing context selects nothing",
  );
});

test("network:NAME of a network spanning hosts also holds its subnets: contexts elsewhere are not in the store", () => {
  const overlay: NetworkRecord = {
    ...net("ov", "10.50.0.0/16", "10.50.3.1"),
    subnets: [{ cidr: "10.50.0.0/16" }],
    cluster: {
      vni: 5,
      node: "n1",
      blockLengths: [24],
      blocks: [{ cidr: "10.50.3.0/24", gateway: "10.50.3.1" }],
    },
  };
  const local = ctx("local", { ov: ["10.50.3.2/16"] });
  const t = compilePolicies({
    policies: [pol({ name: "p", to: "local", from: "network:ov" })],
    contexts: [local],
    networks: [overlay],
  });
  assert.ok(allowed(t, "10.50.7.9", "10.50.3.2"), "a context on another node");
  assert.equal(lookup(t, "10.50.3.1").gateway, true, "the held block's gateway");
  assert.ok(!allowed(t, "10.60.0.1", "10.50.3.2"));
  const bridged = compilePolicies({
    policies: [pol({ name: "p", to: "db", from: "network:front" })],
    contexts,
    networks,
  });
  assert.ok(!allowed(bridged, "10.1.0.77", "10.2.0.4"), "a local network is its contexts only");
});

test("--isolate: one group per isolating network, on its contexts' addresses on it only", () => {
  const iso = net("front", "10.1.0.0/24", "10.1.0.1", { isolate: true });
  const also = net("aaa", "10.3.0.0/24", "10.3.0.1", { isolate: true });
  const x = ctx("x", { aaa: ["10.3.0.2/24"] });
  const t = compilePolicies({ policies: [], contexts: [...contexts, x], networks: [iso, back, also] });
  assert.equal(lookup(t, "10.3.0.2").isolateGroup, 1, "aaa sorts first");
  assert.equal(lookup(t, "10.1.0.2").isolateGroup, 2);
  assert.equal(lookup(t, "10.1.0.3").isolateGroup, 2);
  assert.equal(lookup(t, "10.2.0.3").isolateGroup, 0, "api on back is not isolated there");
  assert.equal(lookup(t, "10.1.0.1").isolateGroup, 0, "the gateway is in no group");
  assert.ok(!allowed(t, "10.1.0.2", "10.1.0.3"));
  assert.ok(allowed(t, "10.1.0.2", "10.1.0.1"), "the gateway and beyond stay reachable");
  assert.ok(allowed(t, "10.2.0.3", "10.2.0.4"));
});

test("--default-deny: every address of every context on the network is ingress-selected", () => {
  const denying = net("back", "10.2.0.0/24", "10.2.0.1", { defaultDeny: true });
  const t = compilePolicies({ policies: [], contexts, networks: [front, denying] });
  assert.equal(lookup(t, "10.2.0.4").ingressSelected, true);
  assert.equal(
    lookup(t, "10.1.0.3").ingressSelected,
    true,
    "api's front address too: the context is selected",
  );
  assert.equal(lookup(t, "10.1.0.2").ingressSelected, false);
  assert.ok(!allowed(t, "10.1.0.2", "10.2.0.4"));
  const opened = compilePolicies({
    policies: [pol({ name: "p", to: "db", from: "web", ports: ["5432"] })],
    contexts,
    networks: [front, denying],
  });
  assert.ok(allowed(opened, "10.1.0.2", "10.2.0.4", "tcp", 5432));
  assert.ok(!allowed(opened, "10.1.0.2", "10.2.0.4", "tcp", 5433));
});

test("ports: TCP by default, ranges expand, a policy without ports allows every port", () => {
  const t = compilePolicies({
    policies: [
      pol({ name: "a", to: "db", from: "web", ports: ["5432", "8000-8002/udp"] }),
      pol({ name: "b", to: "db", from: "api" }),
    ],
    contexts,
    networks,
  });
  assert.equal(t.anyPort, 2n);
  assert.deepEqual(
    t.ports.map((p) => `${p.proto}/${p.port}=${p.bits}`),
    ["tcp/5432=1", "udp/8000=1", "udp/8001=1", "udp/8002=1"],
  );
  assert.ok(allowed(t, "10.1.0.2", "10.2.0.4", "tcp", 5432));
  assert.ok(!allowed(t, "10.1.0.2", "10.2.0.4", "udp", 5432));
  assert.ok(allowed(t, "10.1.0.2", "10.2.0.4", "udp", 8001));
  assert.ok(!allowed(t, "10.1.0.2", "10.2.0.4", "tcp", 8001));
  assert.ok(allowed(t, "10.2.0.3", "10.2.0.4", "udp", 9999), "b allows api every port");
});

test("two policies selecting one context: what either allows passes (their bits meet per policy)", () => {
  const t = compilePolicies({
    policies: [
      pol({ name: "a", to: "db", from: "web", ports: ["80"] }),
      pol({ name: "b", to: "db", from: "api", ports: ["443"] }),
    ],
    contexts,
    networks,
  });
  assert.ok(allowed(t, "10.1.0.2", "10.2.0.4", "tcp", 80));
  assert.ok(!allowed(t, "10.1.0.2", "10.2.0.4", "tcp", 443), "web may not use b's port");
  assert.ok(allowed(t, "10.2.0.3", "10.2.0.4", "tcp", 443));
  assert.ok(!allowed(t, "10.2.0.3", "10.2.0.4", "tcp", 80));
});

test("more policies than the tables hold are refused", () => {
  const many = Array.from({ length: MAX_POLICIES + 1 }, (_, i) =>
    pol({ name: `p${i}`, to: "db", from: "web" }),
  );
  assert.throws(() => compilePolicies({ policies: many, contexts, networks }), /the tables hold 256/);
  const full = compilePolicies({ policies: many.slice(0, MAX_POLICIES), contexts, networks });
  assert.equal(lookup(full, "10.2.0.4").ingressTo, (1n << BigInt(MAX_POLICIES)) - 1n);
});

test("a policy or --default-deny selecting a context on a network its driver cannot enforce is refused, naming it", () => {
  const lan = net("lan", "10.9.0.0/24", "10.9.0.254");
  const m = ctx("m", { lan: ["10.9.0.2/24"] });
  const why = "its contexts switch frames where no host hook sees them";
  const unenforceable = new Map([["lan", why]]);
  const base = { contexts: [...contexts, m], networks: [...networks, lan], unenforceable };
  // Naming it as a peer only is fine: its own traffic is not what the policy restricts.
  compilePolicies({ ...base, policies: [pol({ name: "p", to: "web", from: "m" })] });
  assert.throws(() => compilePolicies({ ...base, policies: [pol({ name: "in", to: "m", from: "world" })] }), {
    message: `policy in: policy "in" selects context "m" on network "lan": ${why}`,
  });
  assert.throws(
    () =>
      compilePolicies({ ...base, policies: [pol({ name: "out", to: "world", from: "m", egress: true })] }),
    /policy out: .*"m" on network "lan"/,
  );
  const denying = { ...lan, options: { defaultDeny: true } };
  assert.throws(
    () => compilePolicies({ ...base, networks: [...networks, denying], policies: [] }),
    /^.*default-deny: network "lan" selects context "m"/,
  );
  // Without the driver's word, the same records compile.
  compilePolicies({
    contexts: base.contexts,
    networks: base.networks,
    policies: [pol({ name: "in", to: "m", from: "world" })],
  });
});
