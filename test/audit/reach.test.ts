/**
 * netctx audit --reach on the kernel: 12 contexts over 3 networks and every level (l2 on a bridge and on a routed
 * network, l3 and socket on a host network), with ingress and egress policies, a --default-deny and an --isolate
 * network. The matrix matches the policies and exits 0; then one port entry is deleted from the data path's map
 * behind netctx's back, and the audit names exactly the cells that entry allowed and exits non-zero.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, test } from "node:test";
import { Host } from "../../src/host.ts";
import { mapDelete } from "../../src/kernel/bpf/maps.ts";
import { policyMapsIfAny } from "../../src/networks/policy-datapath.ts";
import { activeGeneration, portKey } from "../../src/networks/policy-maps.ts";
import { NETCTX, netctx, netctxOk } from "../utils/cli.ts";
import { testConfig } from "../utils/config.ts";
import { waitFor } from "../utils/wait.ts";

/** The host's loopback addresses (the world's address lives there only while an audit runs). */
const loAddresses = (): string[] =>
  (
    JSON.parse(spawnSync("ip", ["-j", "addr", "show", "dev", "lo"], { encoding: "utf8" }).stdout) as {
      addr_info: { local: string }[];
    }[]
  ).flatMap((l) => l.addr_info.map((a) => a.local));

interface ReachJson {
  ports: string[];
  world: string | null;
  cells: {
    from: string;
    to: string;
    port: string;
    expected: string;
    measured: string;
    reason: string;
    evidence: string;
    ok: boolean;
  }[];
  skipped: string[];
  ok: boolean;
}

function reach(...args: string[]): { code: number; report: ReachJson; secs: number } {
  const started = Date.now();
  const r = netctx("audit", "--reach", ...args, "--json");
  assert.ok(r.stdout.trim().startsWith("{"), `no JSON: ${r.stderr}${r.stdout}`);
  return { code: r.code, report: JSON.parse(r.stdout) as ReachJson, secs: (Date.now() - started) / 1000 };
}

const cell = (report: ReachJson, from: string, to: string, port: string) =>
  report.cells.find((c) => c.from === from && c.to === to && c.port === port);

let host: Host | undefined;
after(() => host?.close());

test("the reach matrix of 12 contexts over 3 networks matches the policies, and catches a rule deleted by hand", () => {
  netctxOk("network", "create", "rb", "--driver", "bridge", "--subnet", "10.91.0.0/24");
  netctxOk("network", "create", "rr", "--driver", "routed", "--subnet", "10.92.0.0/24", "--default-deny");
  netctxOk("network", "create", "rh", "--driver", "host", "--subnet", "10.93.0.0/24", "--isolate");
  const contexts: [string, string, string, string[]][] = [
    ["b1", "l2", "rb", ["app=web"]],
    ["b2", "l2", "rb", ["app=db"]],
    ["b3", "l2", "rb", []],
    ["b4", "l2", "rb", []],
    ["r1", "l2", "rr", ["app=web"]],
    ["r2", "l2", "rr", []],
    ["r3", "l2", "rr", ["app=db"]],
    ["l1", "l3", "rh", ["app=db"]],
    ["l2", "l3", "rh", []],
    ["s1", "socket", "rh", ["app=web"]],
    ["s2", "socket", "rh", []],
    ["s3", "socket", "rh", []],
  ];
  for (const [name, level, network, labels] of contexts)
    netctxOk(
      "create",
      name,
      "--level",
      level,
      "--network",
      network,
      ...labels.flatMap((l) => ["--label", l]),
    );
  netctxOk("policy", "add", "web-to-db", "--to", "app=db", "--from", "app=web", "--port", "5432");
  netctxOk("policy", "add", "db-metrics", "--to", "app=db", "--from", "network:rb", "--port", "9100/udp");
  netctxOk("policy", "add", "host-to-rr", "--to", "network:rr", "--from", "host", "--port", "8080");
  netctxOk("policy", "add", "b4-to-r2", "--to", "r2", "--from", "b4");
  netctxOk("policy", "add", "s2-out", "--from", "s2", "--to", "network:rb", "--port", "8080", "--egress");
  netctxOk("policy", "add", "b3-world", "--from", "b3", "--to", "world", "--port", "80", "--egress");

  const { code, report, secs } = reach();
  const differing = report.cells.filter((c) => !c.ok);
  assert.deepEqual(
    differing.map((c) => `${c.from} -> ${c.to} ${c.port}: ${c.measured} (${c.expected}) ${c.evidence}`),
    [],
  );
  assert.equal(code, 0);
  assert.equal(report.ok, true);
  assert.deepEqual(report.ports, ["tcp/80", "tcp/5432", "tcp/7777", "tcp/8080", "udp/7777", "udp/9100"]);
  // 12 x 11 pairs, and to the host, from the host and to the world, on every port.
  assert.equal(report.cells.length, (12 * 11 + 3 * 12) * 6);
  console.log(`audit --reach: ${report.cells.length} cells in ${secs}s`);
  assert.ok(secs < 60, `audit --reach took ${secs}s`);
  // A few cells that show each rule was measured, both ways, and not read off the expectation.
  const expect = (from: string, to: string, port: string, verdict: string) => {
    const c = cell(report, from, to, port);
    assert.equal(c?.measured, verdict, `${from} -> ${to} ${port}: ${c?.evidence}`);
  };
  expect("b1", "b2", "tcp/5432", "allowed"); // ingress policy, over the bridge (shortcut)
  expect("b1", "b2", "tcp/7777", "blocked"); // the selected context, another port
  expect("b3", "b2", "udp/9100", "blocked"); // b3 is egress-selected: only the world on tcp/80
  expect("b4", "b2", "udp/9100", "allowed"); // network:rb, UDP
  expect("r1", "r3", "tcp/5432", "allowed"); // routed, default-deny, allowed port
  expect("r1", "r2", "tcp/5432", "blocked"); // default-deny
  expect("b4", "r2", "udp/7777", "allowed"); // any port
  expect("host", "r2", "tcp/8080", "allowed");
  expect("host", "r2", "tcp/80", "blocked");
  expect("l1", "s1", "tcp/7777", "blocked"); // isolated host network, shared stack
  expect("s1", "l1", "tcp/5432", "blocked"); // isolation wins over a policy
  expect("s2", "b4", "tcp/8080", "allowed"); // egress policy from a socket context
  expect("s2", "b4", "tcp/80", "blocked");
  expect("b3", "world", "tcp/80", "allowed");
  expect("b3", "world", "tcp/7777", "blocked");
  expect("b1", "world", "udp/7777", "allowed");
  expect("r2", "host", "tcp/7777", "allowed");
  assert.equal(report.world, "192.0.2.123");
  assert.ok(!loAddresses().includes(report.world), "the world's address is gone after the audit");

  // Behind netctx's back: the data path forgets tcp/5432 (web-to-db's only port).
  host = Host.open(testConfig());
  const maps = policyMapsIfAny(host);
  assert.ok(maps, "the policy data path is anchored");
  assert.equal(mapDelete(maps.ports, portKey(activeGeneration(maps), "tcp", 5432)), true);
  const broken = reach();
  assert.notEqual(broken.code, 0);
  assert.equal(broken.report.ok, false);
  const named = broken.report.cells
    .filter((c) => !c.ok)
    .map((c) => `${c.from} -> ${c.to} ${c.port} ${c.measured}`)
    .sort();
  // Every web context to every db context it may reach on 5432 (s1 -> l1 is isolated, and stays blocked).
  assert.deepEqual(named, [
    "b1 -> b2 tcp/5432 blocked",
    "b1 -> l1 tcp/5432 blocked",
    "b1 -> r3 tcp/5432 blocked",
    "r1 -> b2 tcp/5432 blocked",
    "r1 -> l1 tcp/5432 blocked",
    "r1 -> r3 tcp/5432 blocked",
    "s1 -> b2 tcp/5432 blocked",
    "s1 -> r3 tcp/5432 blocked",
  ]);
  const text = netctx("audit", "--reach", "b1", "b2");
  assert.equal(text.code, 2, text.stderr);
  assert.match(text.stdout, /^DIFFERS b1 -> b2 tcp\/5432: measured blocked, expected allowed/m);
  assert.match(text.stdout, /reach: DIFFERENCES FOUND/);
});

test("--scene narrows the matrix to an apply scene's contexts; bad flags are refused with one line", async () => {
  const dir = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH ?? "/tmp", "reach-"));
  const path = join(dir, "side.yaml");
  writeFileSync(
    path,
    `name: side
networks:
  - { name: sn, driver: bridge, subnets: [10.94.0.0/24] }
contexts:
  - { name: sa, level: l2, networks: [sn] }
  - { name: sb, level: socket, networks: [rh] }
policies:
  - { name: sa-from-sb, to: sa, from: sb, ports: [6000/udp] }
`,
  );
  netctxOk("apply", path);
  const { code, report } = reach("--scene", "side");
  assert.deepEqual(
    report.cells.filter((c) => !c.ok).map((c) => `${c.from} -> ${c.to} ${c.port}: ${c.evidence}`),
    [],
  );
  assert.equal(code, 0);
  const ends = new Set(report.cells.flatMap((c) => [c.from, c.to]));
  assert.deepEqual([...ends].sort(), ["host", "sa", "sb", "world"]);
  assert.equal(cell(report, "sb", "sa", "udp/6000")?.measured, "allowed");
  assert.equal(cell(report, "sb", "sa", "udp/7777")?.measured, "blocked");

  // A port the host's listener cannot hold: its cells cannot be measured, and that fails the audit, named.
  const squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(7777, "10.94.0.1", resolve));
  try {
    const squatted = reach("--scene", "side");
    assert.equal(squatted.code, 2);
    assert.deepEqual(
      squatted.report.cells
        .filter((c) => !c.ok)
        .map((c) => `${c.from} -> ${c.to} ${c.port} ${c.measured}: ${c.evidence}`),
      ["sa -> host tcp/7777 unmeasured: no listener at 10.94.0.1 tcp/7777: EADDRINUSE"],
    );
  } finally {
    await new Promise((resolve) => squatter.close(resolve));
  }

  // An audit ended by a signal takes the world's address off the host too.
  const child = spawn(NETCTX, ["audit", "--reach", "--scene", "side"], { stdio: "ignore" });
  const ended = new Promise((resolve) => child.on("close", (code, signal) => resolve(signal ?? code)));
  await waitFor(() => loAddresses().includes("192.0.2.123"), 10_000);
  assert.ok(loAddresses().includes("192.0.2.123"), "the world's address is on lo while the audit runs");
  child.kill("SIGINT");
  assert.equal(await ended, "SIGINT");
  assert.ok(!loAddresses().includes("192.0.2.123"), "the world's address is gone after SIGINT");

  for (const [args, message] of [
    [["--scene", "side"], /^error: --scene: only with --reach$/],
    [["--reach", "--scene", "nosuch"], /^error: scene "nosuch" does not exist$/],
    [["--reach", "nosuch"], /^error: context "nosuch" does not exist$/],
  ] as const) {
    const r = netctx("audit", ...args);
    assert.notEqual(r.code, 0, args.join(" "));
    assert.match(r.stderr.trim(), message);
    assert.equal(r.stdout, "");
  }
});
