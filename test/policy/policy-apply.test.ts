/** Policies and labels in apply files: made, changed in place, pruned and destroyed with their scene, never taken over. */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { netctx, netctxJson, netctxOk, netctxState } from "../utils/cli.ts";

const dir = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH ?? "/tmp", "apply-policy-"));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

interface PolicyView {
  name: string;
  to: string;
  from: string;
  ports: string[];
  egress: boolean;
  scene?: string;
}
interface ContextView {
  name: string;
  labels?: Record<string, string>;
  createdAt: string;
}
interface NetworkView {
  name: string;
  isolate: boolean;
  defaultDeny: boolean;
}

const scene = (webLabels: string, ports: string, extra = "") => `
name: guarded
networks:
  - { name: gnet, driver: bridge, subnets: [10.83.0.0/24], isolate: true, defaultDeny: true }
contexts:
  - { name: gweb, level: l2, networks: [gnet], labels: { ${webLabels} } }
  - { name: gdb, level: l2, networks: [gnet], labels: { app: db } }
policies:
  - { name: web-db, to: "app=db", from: "app=web", ports: [${ports}] }
${extra}`;

const policies = () => netctxJson<PolicyView[]>("policy", "ls");
const context = (name: string) => netctxJson<ContextView[]>("ls").find((c) => c.name === name)!;

test("apply makes a scene's policies before its contexts, and a second apply changes nothing", () => {
  const path = file("scene.yaml", scene("app: web", "5432, 9000-9001/udp"));
  const out = netctxOk("apply", path);
  const lines = out.trim().split("\n");
  const policyAt = lines.findIndex((l) => /create policy web-db/.test(l));
  const contextAt = lines.findIndex((l) => /create context/.test(l));
  assert.ok(policyAt >= 0 && policyAt < contextAt, out);
  assert.deepEqual(policies(), [
    {
      ...policies()[0]!,
      name: "web-db",
      to: "app=db",
      from: "app=web",
      ports: ["5432/tcp", "9000-9001/udp"],
      egress: false,
      scene: "guarded",
    },
  ]);
  const net = netctxJson<NetworkView[]>("network", "ls").find((n) => n.name === "gnet")!;
  assert.equal(net.isolate, true);
  assert.equal(net.defaultDeny, true);
  assert.deepEqual(context("gweb").labels, { app: "web", "netctx.scene": "guarded" });
  assert.match(netctxOk("apply", path), /nothing to do/);
});

test("changed labels change in place; a changed policy is replaced", () => {
  const made = context("gweb").createdAt;
  const out = netctxOk("apply", file("scene2.yaml", scene("app: web, tier: front", "5433")));
  assert.match(out, /relabel context gweb/);
  assert.match(out, /replace policy web-db \(ports differs\)/);
  assert.doesNotMatch(out, /replace context/);
  const web = context("gweb");
  assert.deepEqual(web.labels, { app: "web", tier: "front", "netctx.scene": "guarded" });
  assert.equal(web.createdAt, made, "the same context");
  assert.deepEqual(policies()[0]!.ports, ["5433/tcp"]);
});

test("a bad policy in the file is refused naming where it is, before anything changes", () => {
  const before = netctxState() + netctxOk("policy", "ls", "--json");
  const cases: [string, RegExp][] = [
    [scene("app: web", "0"), /^error: policies\[0\]\.ports\[0\]: port 0 is outside 1-65535$/],
    [
      scene("app: web", "80").replace('to: "app=db"', 'to: "no such thing"'),
      /^error: policies\[0\]\.to: "no such thing" is neither/,
    ],
    [
      scene("app: web", "80", "  - { name: web-db, to: db, from: web }"),
      /^error: policies\[1\]\.name: policy "web-db" is declared twice$/,
    ],
    [
      scene('"netctx.scene": other', "80"),
      /^error: contexts\[0\]\.labels: "netctx\.scene" is apply's own label/,
    ],
    [scene('"cni.config": x', "80"), /^error: contexts\[0\]\.labels: key "cni\.config" is netctx's own/],
    [scene('app: "a b"', "80"), /^error: contexts\[0\]\.labels: value "a b" of "app"/],
  ];
  for (const [text, message] of cases) {
    const r = netctx("apply", file("bad.yaml", text));
    assert.notEqual(r.code, 0, text);
    assert.match(r.stderr.trim(), message);
  }
  assert.equal(netctxState() + netctxOk("policy", "ls", "--json"), before);
});

test("a policy made by hand is never taken over: the same is used, a different one refused", () => {
  netctxOk("policy", "add", "hand", "--to", "gdb", "--from", "host");
  const same = netctxOk(
    "apply",
    file("same.yaml", scene("app: web, tier: front", "5433", "  - { name: hand, to: gdb, from: host }")),
  );
  assert.match(same, /note: policy hand exists, made by hand: used as it is, never pruned by this scene/);
  const r = netctx(
    "apply",
    file("other.yaml", scene("app: web, tier: front", "5433", "  - { name: hand, to: gdb, from: world }")),
  );
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /^error: policies\[1\]\.name: policy "hand" exists, made by hand, with another from/,
  );
});

test("--prune removes the scene's own policies the file no longer declares, never another's", () => {
  const noPolicies = scene("app: web, tier: front", "5433").replace(/policies:[\s\S]*$/, "");
  const kept = netctxOk("apply", file("kept.yaml", noPolicies));
  assert.doesNotMatch(kept, /remove policy/);
  assert.ok(
    policies().some((p) => p.name === "web-db"),
    "without --prune it stays",
  );
  const pruned = netctxOk("apply", "--prune", file("pruned.yaml", noPolicies));
  assert.match(pruned, /will remove: policy web-db/);
  assert.deepEqual(
    policies().map((p) => p.name),
    ["hand"],
  );
});

test("destroy removes the scene's policies with its contexts and networks", () => {
  const path = file("again.yaml", scene("app: web", "80"));
  netctxOk("apply", path);
  const out = netctxOk("destroy", path);
  assert.match(out, /removed policy web-db/);
  assert.deepEqual(
    policies().map((p) => p.name),
    ["hand"],
  );
  assert.equal(netctxJson<ContextView[]>("ls").length, 0);
  netctxOk("policy", "rm", "hand");
});
