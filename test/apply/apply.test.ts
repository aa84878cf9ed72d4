import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { test } from "node:test";
import { NETCTX, netctx, netctxJson, netctxOk, netctxState as state } from "../utils/cli.ts";
import { kernelSnapshot, links, netnsNames } from "../utils/kernel-oracle.ts";
import { ping } from "../utils/ping.ts";
import { must } from "../utils/shell.ts";
import { eventually } from "../utils/wait.ts";

const dir = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH ?? "/tmp", "apply-"));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const SCENE = `
name: shop
networks:
  - { name: front, driver: bridge, subnets: [10.91.0.0/24, "fd91::/64"], nat: true }
  - { name: back, driver: routed, subnets: [10.92.0.0/24] }
contexts:
  - { name: web, level: l2, networks: [front], ips: [10.91.0.10] }
  - { name: db, level: l2, networks: [front, back] }
  - { name: job, level: l2, networks: [back] }
`;

interface View {
  name: string;
  addresses: string[];
  netns: string;
}

test("apply creates the scene, and a second apply changes nothing", () => {
  const scene = file("scene.yaml", SCENE);
  const out = netctxOk("apply", scene);
  assert.match(out, /\[5\/5\] create context job/);
  const views = netctxJson<View[]>("ls");
  assert.deepEqual(views.map((v) => v.name).sort(), ["db", "job", "web"]);
  const web = views.find((v) => v.name === "web")!;
  assert.ok(web.addresses.includes("10.91.0.10/24"));
  const job = views.find((v) => v.name === "job")!;
  assert.ok(ping(web.netns, views.find((v) => v.name === "db")!.addresses[0]!.split("/")[0]!));
  assert.ok(ping(job.netns, "10.91.0.10"), "routed to bridged across the host");
  // The batch guarded every port in one transaction: each context's host veth is in its table's port set.
  const ports = (family: string) =>
    JSON.stringify(JSON.parse(must(["nft", "-j", "list", "set", family, "netctx", "as_ports"])));
  for (const v of views)
    for (const hostIf of netctxJson<{ interfaces: { hostIfname: string; network: string }[] }>(
      "inspect",
      v.name,
      "--json",
    ).interfaces)
      assert.match(
        ports(hostIf.network === "back" ? "inet" : "bridge"),
        new RegExp(`"${hostIf.hostIfname}"`),
      );
  // And a forged source address from a batch-made context is dropped.
  spawnSync("ip", ["-n", basename(web.netns), "addr", "add", "10.91.0.200/24", "dev", "eth0"]);
  const spoofed = spawnSync("nsenter", [
    `--net=${web.netns}`,
    "ping",
    "-c1",
    "-W1",
    "-I",
    "10.91.0.200",
    "10.91.0.1",
  ]);
  assert.notEqual(spoofed.status, 0, "spoofed source dropped");
  spawnSync("ip", ["-n", basename(web.netns), "addr", "del", "10.91.0.200/24", "dev", "eth0"]);

  const before = { state: state(), kernel: kernelSnapshot() };
  assert.match(netctxOk("apply", scene), /nothing to do/);
  assert.equal(state(), before.state);
  assert.equal(kernelSnapshot(), before.kernel);
});

test("a changed context is replaced, a new one added, and --prune removes what is no longer declared", () => {
  const changed = SCENE.replace("ips: [10.91.0.10]", "ips: [10.91.0.11]")
    .replace(
      "  - { name: job, level: l2, networks: [back] }\n",
      "  - { name: cache, level: l2, networks: [front] }\n",
    )
    .replace("  - { name: back, driver: routed, subnets: [10.92.0.0/24] }\n", "")
    .replace("networks: [front, back]", "networks: [front]");
  const scene = file("changed.yaml", changed);
  const first = netctxOk("apply", scene);
  assert.match(first, /replace context web \(address 10\.91\.0\.11 differs\)/);
  assert.match(first, /replace context db \(networks differs\)/);
  assert.ok(
    netctxJson<View[]>("ls").some((v) => v.name === "job"),
    "without --prune, undeclared contexts stay",
  );
  const out = netctxOk("apply", "--prune", scene);
  assert.match(out, /remove context job/);
  assert.doesNotMatch(out, /replace/, "what matches is left alone");
  assert.match(out, /remove network back/);
  const views = netctxJson<View[]>("ls");
  assert.deepEqual(views.map((v) => v.name).sort(), ["cache", "db", "web"]);
  assert.ok(views.find((v) => v.name === "web")!.addresses.includes("10.91.0.11/24"));
  assert.deepEqual(
    netctxJson<{ name: string }[]>("network", "ls").map((n) => n.name),
    ["front"],
  );
});

const invalidFiles: [string, string, RegExp][] = [
  ["broken YAML", "networks: [ { name: x", /^error: file: .*broken\.yaml/],
  ["unknown key", "networks: []\ncontext: []\n", /^error: input: unknown key "context"/],
  [
    "bad CIDR deep in the file",
    "networks:\n  - { name: a1, driver: bridge, subnets: [10.93.0.0/24] }\n  - { name: a2, driver: bridge, subnets: [10.94.0.0/33] }\n",
    /^error: networks\[1\]\.subnets\[0\]: /,
  ],
  [
    "wrong type",
    "contexts:\n  - { name: c1, level: l2, networks: front }\n",
    /^error: contexts\[0\]\.networks: /,
  ],
  [
    "unknown network",
    "contexts:\n  - { name: c1, level: l2, networks: [nowhere] }\n",
    /^error: contexts\[0\]\.networks\[0\]: network "nowhere"/,
  ],
  ["duplicate key", "networks: []\nnetworks: []\n", /^error: file: .*[Mm]ap keys must be unique/],
  [
    "bad name",
    "contexts:\n  - { name: ../x, level: l2, networks: [front] }\n",
    /^error: contexts\[0\]\.name: /,
  ],
];

for (const [what, text, message] of invalidFiles) {
  test(`an invalid file is refused whole, naming the field: ${what}`, () => {
    const before = { state: state(), kernel: kernelSnapshot() };
    const r = netctx("apply", file(`${what.replace(/\W/g, "")}.yaml`.replace(/^brokenYAML/, "broken"), text));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split("\n").length, 1);
    assert.equal(state(), before.state);
    assert.equal(kernelSnapshot(), before.kernel);
  });
}

test("a failure half-way undoes what the apply made", () => {
  const before = { state: state(), netns: netnsNames() };
  // web holds 10.91.0.11; the third new context asks for it, after two others were made.
  const scene = file(
    "clash.yaml",
    `${SCENE.split("contexts:")[0]!.replace("  - { name: back, driver: routed, subnets: [10.92.0.0/24] }\n", "")}contexts:
  - { name: n1, level: l2, networks: [front] }
  - { name: n2, level: l2, networks: [front] }
  - { name: n3, level: l2, networks: [front], ips: [10.91.0.11] }
`,
  );
  const r = netctx("apply", scene);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^error: contexts\[2\]: ip: 10\.91\.0\.11 is already in use by "web"/);
  assert.equal(state(), before.state);
  assert.deepEqual(eventually(netnsNames, before.netns), before.netns);
});

test("a kernel failure inside a batch undoes the whole batch, and leaves foreign objects alone", () => {
  const before = {
    state: state(),
    elements: must(["nft", "-j", "list", "set", "bridge", "netctx", "as_ports"]),
  };
  // Somebody else's link holds the name the second context's host-side veth would get.
  must(["ip", "link", "add", "nc-b2", "type", "veth", "peer", "name", "foreign-b2"]);
  const scene = file(
    "batch.yaml",
    `contexts:
  - { name: b1, level: l2, networks: [front] }
  - { name: b2, level: l2, networks: [front] }
  - { name: b3, level: l2, networks: [front] }
`,
  );
  const r = netctx("apply", scene);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^error: [^\n]*\n$/);
  assert.equal(state(), before.state, "no record or lease of the batch is left");
  assert.equal(must(["nft", "-j", "list", "set", "bridge", "netctx", "as_ports"]), before.elements);
  assert.deepEqual(
    eventually(() => netnsNames().filter((n) => /^netctx-b\d$/.test(n)), []),
    [],
    "no netns of the batch is left",
  );
  assert.ok(
    links().some((l) => l.ifname === "nc-b2"),
    "the foreign link is still there",
  );
  must(["ip", "link", "del", "nc-b2"]);

  // A namespace of someone else under a context's name is refused up front, and left alone.
  must(["ip", "netns", "add", "netctx-b9"]);
  const taken = netctx("create", "b9", "--level", "l2", "--network", "front");
  assert.match(taken.stderr, /^error: name: network namespace netctx-b9 already exists/);
  assert.ok(netnsNames().includes("netctx-b9"));
  must(["ip", "netns", "del", "netctx-b9"]);
});

test("state export is an apply file: a fresh host restores the same contexts and addresses", () => {
  const exported = netctxOk("state", "export");
  const path = file("export.json", exported);
  const fresh = mkdtempSync(join(dir, "fresh-"));
  // The same names cannot live twice in one host namespace: tear down here, restore into the fresh state dir. (Not
  // with destroy: the export is a scene of its own that made none of these.)
  netctxOk("rm", ...netctxJson<{ name: string }[]>("ls").map((c) => c.name));
  netctxOk("network", "rm", ...netctxJson<{ name: string }[]>("network", "ls").map((n) => n.name));
  assert.deepEqual(netctxJson<unknown[]>("ls"), []);
  const r = spawnSync(NETCTX, ["apply", path], {
    env: { ...process.env, NETCTX_STATE_DIR: fresh },
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr);
  const restored = JSON.parse(
    spawnSync(NETCTX, ["ls", "--json"], {
      env: { ...process.env, NETCTX_STATE_DIR: fresh },
      encoding: "utf8",
    }).stdout,
  ) as View[];
  const original = (JSON.parse(exported) as { contexts: { name: string; ips: string[] }[] }).contexts;
  assert.deepEqual(
    restored.map((v) => [v.name, v.addresses.map((a) => a.split("/")[0]).sort()]).sort(),
    original.map((c) => [c.name, [...c.ips].sort()]).sort(),
  );
});
