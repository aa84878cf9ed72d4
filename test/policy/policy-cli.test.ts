/**
 * Labels, policies and the network switches through the real CLI, checked on the state it shows (`ls --json`,
 * `inspect`, `policy ls --json`, `network ls --json`): the data path's tables are another branch's, tested there.
 */
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { netctx, netctxJson, netctxOk, netctxState, startEngine } from "../utils/cli.ts";
import { waitFor } from "../utils/wait.ts";

interface ContextView {
  name: string;
  labels?: Record<string, string>;
}
interface PolicyView {
  name: string;
  to: string;
  from: string;
  ports: string[];
  egress: boolean;
}
interface NetworkView {
  name: string;
  isolate: boolean;
  defaultDeny: boolean;
  options: Record<string, unknown>;
}

const policies = () => netctxJson<PolicyView[]>("policy", "ls");
const everything = () => netctxState() + netctxOk("policy", "ls", "--json");

before(() => {
  netctxOk("network", "create", "pol", "--subnet", "10.77.0.0/24", "--isolate", "--default-deny");
  netctxOk("network", "create", "open", "--subnet", "10.78.0.0/24");
  netctxOk(
    "create",
    "web",
    "--level",
    "l2",
    "--network",
    "pol",
    "--label",
    "app=web",
    "--label",
    "example.com/tier=front",
  );
  netctxOk("create", "db", "--level", "l2", "--network", "pol", "--label", "app=db");
});

test("create --label: ls --json and inspect show the labels", () => {
  const web = netctxJson<ContextView[]>("ls").find((c) => c.name === "web");
  assert.deepEqual(web?.labels, { app: "web", "example.com/tier": "front" });
  const db = JSON.parse(netctxOk("inspect", "db")) as ContextView;
  assert.deepEqual(db.labels, { app: "db" });
  assert.match(netctxOk("ls"), /app=web,example\.com\/tier=front/);
});

test("network create --isolate --default-deny: stored in the options, shown by ls and inspect", () => {
  const nets = netctxJson<NetworkView[]>("network", "ls");
  const pol = nets.find((n) => n.name === "pol")!;
  assert.equal(pol.isolate, true);
  assert.equal(pol.defaultDeny, true);
  assert.equal(pol.options.isolate, true);
  const open = nets.find((n) => n.name === "open")!;
  assert.equal(open.isolate, false);
  assert.equal(open.defaultDeny, false);
  assert.equal(open.options.isolate, undefined);
  const inspected = JSON.parse(netctxOk("network", "inspect", "pol")) as NetworkView;
  assert.equal(inspected.defaultDeny, true);
  assert.match(netctxOk("network", "ls"), /pol .*isolate,default-deny/);
});

test("policy add, ls, rm: selectors kept in their one form, ports as written, TCP by default", () => {
  netctxOk(
    "policy",
    "add",
    "web-to-db",
    "--to",
    "app=db",
    "--from",
    "web",
    "--port",
    "5432",
    "--port",
    "9000-9002/udp",
  );
  netctxOk("policy", "add", "out", "--to", "10.0.0.0/8", "--from", "app=web", "--egress");
  const list = policies();
  assert.deepEqual(
    list.map((p) => [p.name, p.to, p.from, p.ports, p.egress]),
    [
      ["out", "10.0.0.0/8", "app=web", [], true],
      ["web-to-db", "app=db", "web", ["5432/tcp", "9000-9002/udp"], false],
    ],
  );
  assert.match(
    netctxOk("policy", "ls"),
    /web-to-db\s+ingress\s+app=db\s+from web\s+5432\/tcp,9000-9002\/udp/,
  );
  assert.equal(netctxOk("policy", "rm", "out", "web-to-db").trim(), "out\nweb-to-db");
  assert.deepEqual(policies(), []);
});

test("policy rm of a missing one exits 1; with --ignore it is a note", () => {
  const missing = netctx("policy", "rm", "ghost");
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, 'error: policy "ghost" does not exist\n');
  const ignored = netctx("policy", "rm", "ghost", "--ignore");
  assert.equal(ignored.code, 0);
  assert.match(ignored.stderr, /^note: policy "ghost" does not exist/);
});

test("bad input: one line naming the field, exit non-zero, nothing changes", () => {
  netctxOk("policy", "add", "taken", "--to", "db", "--from", "web");
  const before = everything();
  const cases: [string, string[], RegExp][] = [
    [
      "duplicate policy name",
      ["policy", "add", "taken", "--to", "db", "--from", "web"],
      /^error: name: policy "taken" already exists$/,
    ],
    [
      "selector that is neither",
      ["policy", "add", "p", "--to", "Not A Selector", "--from", "web"],
      /^error: to: "Not A Selector" is neither a context name/,
    ],
    [
      "port 0",
      ["policy", "add", "p", "--to", "db", "--from", "web", "--port", "0"],
      /^error: ports\[0\]: port 0 is outside 1-65535$/,
    ],
    [
      "port 70000",
      ["policy", "add", "p", "--to", "db", "--from", "web", "--port", "70000"],
      /^error: ports\[0\]: port 70000 is outside/,
    ],
    [
      "range too wide",
      ["policy", "add", "p", "--to", "db", "--from", "web", "--port", "1-2000"],
      /^error: ports\[0\]: range 1-2000 holds 2000 ports; at most 1024/,
    ],
    [
      "protocol",
      ["policy", "add", "p", "--to", "db", "--from", "web", "--port", "80/icmp"],
      /^error: ports\[0\]: protocol "icmp"/,
    ],
    [
      "CIDR with host bits",
      ["policy", "add", "p", "--to", "db", "--from", "10.1.2.3/16"],
      /^error: from: 10\.1\.2\.3\/16 has host bits set/,
    ],
    [
      "bad policy name",
      ["policy", "add", "Bad", "--to", "db", "--from", "web"],
      /^error: name: "Bad" may only contain/,
    ],
    [
      "reserved label",
      ["create", "x", "--level", "l2", "--network", "open", "--label", "netctx.scene=s"],
      /^error: label: key "netctx\.scene" is netctx's own/,
    ],
    [
      "CNI mark as label",
      ["create", "x", "--level", "l2", "--network", "open", "--label", "cni.containerId=1"],
      /^error: label: key "cni\.containerId" is netctx's own/,
    ],
    [
      "label key syntax",
      ["create", "x", "--level", "l2", "--network", "open", "--label", "-bad=1"],
      /^error: label: key "-bad" may only contain/,
    ],
    [
      "label value syntax",
      ["create", "x", "--level", "l2", "--network", "open", "--label", "app=a b"],
      /^error: label: value "a b" of "app"/,
    ],
    [
      "label without =",
      ["create", "x", "--level", "l2", "--network", "open", "--label", "app"],
      /^error: label: "app" is not KEY=VALUE$/,
    ],
  ];
  for (const [what, args, message] of cases) {
    const r = netctx(...args);
    assert.notEqual(r.code, 0, what);
    assert.match(r.stderr.trim(), message, what);
    assert.equal(r.stderr.trim().split("\n").length, 1, `${what}: one line`);
  }
  assert.equal(everything(), before, "nothing changed");
  netctxOk("policy", "rm", "taken");
});

test("a selector naming a network or context that does not exist is allowed: it matches what comes later", () => {
  netctxOk("policy", "add", "later", "--to", "network:future", "--from", "context:host", "--port", "80");
  assert.deepEqual(
    policies().map((p) => [p.to, p.from]),
    [["network:future", "context:host"]],
  );
  netctxOk("policy", "rm", "later");
});

test("with the engine running, policy add and rm go through it", async () => {
  const engine = await startEngine();
  try {
    netctxOk("policy", "add", "via-engine", "--to", "db", "--from", "host", "--port", "53/udp");
    assert.deepEqual(
      policies().map((p) => p.ports),
      [["53/udp"]],
    );
    const dup = netctx("policy", "add", "via-engine", "--to", "db", "--from", "web");
    assert.equal(dup.code, 1);
    assert.equal(dup.stderr, 'error: name: policy "via-engine" already exists\n');
    netctxOk("policy", "rm", "via-engine");
    assert.equal(netctx("policy", "rm", "via-engine").code, 1);
    // The engine's log arrives through this test's event loop.
    await waitFor(() => (engine.log().match(/DELETE \/v1\/policies\/via-engine/g) ?? []).length === 2);
    assert.match(engine.log(), /POST \/v1\/policies -> 201/);
    assert.match(engine.log(), /DELETE \/v1\/policies\/via-engine -> 200/);
  } finally {
    await engine.stop();
  }
  assert.deepEqual(policies(), []);
});

test("state export carries the user's labels and the policies, as an apply file takes them", () => {
  netctxOk("policy", "add", "exported", "--to", "app=db", "--from", "web", "--port", "8080-8081");
  try {
    const dump = JSON.parse(netctxOk("state", "export")) as {
      contexts: { name: string; labels?: Record<string, string> }[];
      networks: { name: string; isolate?: boolean; defaultDeny?: boolean }[];
      policies?: unknown[];
    };
    assert.deepEqual(dump.contexts.find((c) => c.name === "web")?.labels, {
      app: "web",
      "example.com/tier": "front",
    });
    const pol = dump.networks.find((n) => n.name === "pol")!;
    assert.equal(pol.isolate, true);
    assert.equal(pol.defaultDeny, true);
    assert.deepEqual(dump.policies, [
      { name: "exported", to: "app=db", from: "web", ports: ["8080-8081/tcp"] },
    ]);
  } finally {
    netctxOk("policy", "rm", "exported");
  }
});
