import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, test } from "node:test";
import { NETCTX, netctx, netctxOk } from "../utils/cli.ts";
import { kernelSnapshot } from "../utils/kernel-oracle.ts";
// The store's records, read through the library: the one CLI a case starts is the command under test.
import { storeState as state } from "../utils/state-oracle.ts";

before(() => {
  netctxOk(
    "network",
    "create",
    "good",
    "--driver",
    "bridge",
    "--subnet",
    "10.80.0.0/24",
    "--subnet",
    "fd80::/64",
  );
  netctxOk("network", "create", "tiny", "--driver", "bridge", "--subnet", "10.81.0.0/30");
  netctxOk("create", "first", "--level", "l2", "--network", "good", "--ip", "10.80.0.20");
  netctxOk("create", "filler", "--level", "l2", "--network", "tiny");
  netctxOk("network", "create", "hn", "--driver", "host", "--subnet", "10.82.0.0/24");
});

/** The documented limit (README: names up to 12 characters), named in the refusal. */
const TOO_LONG = /^error: name: "abcdefghijklm" is longer than 12 characters \(.*15 bytes\)$/;

const cases: [string, string[], RegExp][] = [
  [
    "invalid network name",
    ["network", "create", "Bad Name", "--driver", "bridge", "--subnet", "10.90.0.0/24"],
    /^error: name: /,
  ],
  [
    "network name too long for its bridge",
    ["network", "create", "abcdefghijklmn", "--driver", "bridge", "--subnet", "10.90.0.0/24"],
    /^error: name: .*15 bytes/,
  ],
  [
    "duplicate network name",
    ["network", "create", "good", "--driver", "bridge", "--subnet", "10.90.0.0/24"],
    /^error: name: .*already exists/,
  ],
  [
    "invalid CIDR",
    ["network", "create", "n1", "--driver", "bridge", "--subnet", "10.90.0.0/33"],
    /^error: subnet: /,
  ],
  [
    "garbage CIDR",
    ["network", "create", "n1", "--driver", "bridge", "--subnet", "banana"],
    /^error: subnet: /,
  ],
  [
    "subnet with host bits",
    ["network", "create", "n1", "--driver", "bridge", "--subnet", "10.90.0.5/24"],
    /^error: subnet: /,
  ],
  [
    "overlapping subnet",
    ["network", "create", "n1", "--driver", "bridge", "--subnet", "10.80.0.128/25"],
    /^error: subnet: .*overlaps.*good/,
  ],
  [
    "overlapping v6 subnet",
    ["network", "create", "n1", "--driver", "bridge", "--subnet", "fd80::/48"],
    /^error: subnet: .*overlaps/,
  ],
  [
    "gateway outside subnet",
    ["network", "create", "n1", "--driver", "bridge", "--subnet", "10.90.0.0/24", "--gateway", "10.91.0.1"],
    /^error: gateway: .*outside/,
  ],
  [
    "gateway is the network address",
    ["network", "create", "n1", "--driver", "bridge", "--subnet", "10.90.0.0/24", "--gateway", "10.90.0.0"],
    /^error: gateway: /,
  ],
  [
    "unknown driver",
    ["network", "create", "n1", "--driver", "warp", "--subnet", "10.90.0.0/24"],
    /^error: driver: unknown driver "warp"/,
  ],
  ["no subnet", ["network", "create", "n1", "--driver", "bridge"], /^error: subnets: /],
  [
    "bad mtu",
    ["network", "create", "n1", "--driver", "bridge", "--subnet", "10.90.0.0/24", "--mtu", "abc"],
    /^error: mtu: /,
  ],
  [
    "tiny mtu",
    ["network", "create", "n1", "--driver", "bridge", "--subnet", "10.90.0.0/24", "--mtu", "10"],
    /^error: mtu: must be at least 68$/,
  ],
  [
    "huge mtu",
    ["network", "create", "n1", "--driver", "bridge", "--subnet", "10.90.0.0/24", "--mtu", "70000"],
    /^error: mtu: must be at most 65535$/,
  ],
  [
    "mtu that is no number, in plain words",
    ["network", "create", "n1", "--subnet", "10.90.0.0/24", "--mtu", "1500x"],
    /^error: mtu: "1500x" is not a whole number$/,
  ],
  [
    "--nat with --internal",
    ["network", "create", "n1", "--subnet", "10.90.0.0/24", "--nat", "--internal"],
    /^error: option '--nat' cannot be used with option '--internal'$/,
  ],
  [
    "--internal with --nat",
    ["network", "create", "n1", "--driver", "routed", "--subnet", "10.90.0.0/24", "--internal", "--nat"],
    /^error: option '--nat' cannot be used with option '--internal'$/,
  ],
  [
    "an -o key no driver declares",
    ["network", "create", "n1", "--subnet", "10.90.0.0/24", "-o", "vni=42"],
    /^error: options: the bridge driver takes no option "vni" \(it takes: none\)$/,
  ],
  [
    "an -o key of another driver",
    ["network", "create", "n1", "--driver", "host", "--subnet", "10.90.0.0/24", "-o", "parent=lo"],
    /^error: options: the host driver takes no option "parent" \(it takes: none\)$/,
  ],
  [
    "an -o key macvlan does not declare",
    [
      "network",
      "create",
      "n1",
      "--driver",
      "macvlan",
      "--parent",
      "lo",
      "--subnet",
      "10.90.0.0/24",
      "-o",
      "mode=vepa",
    ],
    /^error: options: the macvlan driver takes no option "mode" \(it takes: parent\)$/,
  ],
  [
    "--parent on a bridge network",
    ["network", "create", "n1", "--subnet", "10.90.0.0/24", "--parent", "lo"],
    /^error: options: the bridge driver takes no option "parent" \(it takes: none\)$/,
  ],
  ...(["bridge", "routed", "host"] as const).map((driver): [string, string[], RegExp] => [
    `network name over 12 characters (${driver})`,
    ["network", "create", "abcdefghijklm", "--driver", driver, "--subnet", "10.90.0.0/24"],
    TOO_LONG,
  ]),
  [
    "network name over 12 characters (macvlan, which makes no host device)",
    [
      "network",
      "create",
      "abcdefghijklm",
      "--driver",
      "macvlan",
      "--parent",
      "lo",
      "--subnet",
      "10.90.0.0/24",
    ],
    TOO_LONG,
  ],
  [
    "context name over 12 characters (l2)",
    ["create", "abcdefghijklm", "--level", "l2", "--network", "good"],
    TOO_LONG,
  ],
  [
    "context name over 12 characters (l3)",
    ["create", "abcdefghijklm", "--level", "l3", "--network", "hn"],
    TOO_LONG,
  ],
  [
    "context name over 12 characters (socket)",
    ["create", "abcdefghijklm", "--level", "socket", "--network", "hn"],
    TOO_LONG,
  ],
  [
    "unknown option of network create",
    ["network", "create", "n1", "--subnet", "10.90.0.0/24", "--colour", "red"],
    /^error: unknown option '--colour'$/,
  ],
  ["unknown option before the subcommand", ["--colour", "red", "ls"], /^error: unknown option '--colour'$/],
  [
    "unknown option of network rm",
    ["network", "rm", "good", "--colour"],
    /^error: unknown option '--colour'$/,
  ],
  ["unknown option of rm", ["rm", "first", "--colour"], /^error: unknown option '--colour'$/],
  [
    "--state-dir given before and after the subcommand, two directories",
    ["--state-dir", "/nonexistent-a", "rm", "first", "--state-dir", "/nonexistent-b"],
    /^error: --state-dir given twice with two directories: \/nonexistent-a and \/nonexistent-b$/,
  ],
  ["invalid context name", ["create", "../etc", "--level", "l2", "--network", "good"], /^error: name: /],
  [
    "duplicate context name",
    ["create", "first", "--level", "l2", "--network", "good"],
    /^error: name: .*already exists/,
  ],
  [
    "context name too long for its veth",
    ["create", "averyveryverylongname", "--level", "l2", "--network", "good"],
    /^error: name: .*15 bytes/,
  ],
  [
    "unknown network",
    ["create", "c1", "--level", "l2", "--network", "nowhere"],
    /^error: network "nowhere" does not exist/,
  ],
  [
    "unknown level",
    ["create", "c1", "--level", "l4", "--network", "good"],
    /^error: level: unknown level "l4"/,
  ],
  [
    "joining a network twice",
    ["create", "c1", "--level", "l2", "--network", "good", "--network", "good"],
    /^error: network: .*twice/,
  ],
  [
    "address outside the subnet",
    ["create", "c1", "--level", "l2", "--network", "good", "--ip", "10.99.0.5"],
    /^error: ip: .*outside/,
  ],
  [
    "address taken",
    ["create", "c1", "--level", "l2", "--network", "good", "--ip", "10.80.0.20"],
    /^error: ip: .*in use by "first"/,
  ],
  [
    "the gateway's address",
    ["create", "c1", "--level", "l2", "--network", "good", "--ip", "10.80.0.1"],
    /^error: ip: .*gateway/,
  ],
  [
    "the broadcast address",
    ["create", "c1", "--level", "l2", "--network", "good", "--ip", "10.80.0.255"],
    /^error: ip: .*broadcast/,
  ],
  [
    "invalid address",
    ["create", "c1", "--level", "l2", "--network", "good", "--ip", "10.80.0.300"],
    /^error: ip: /,
  ],
  ["invalid MAC", ["create", "c1", "--level", "l2", "--network", "good", "--mac", "zz:11"], /^error: mac: /],
  [
    "multicast MAC",
    ["create", "c1", "--level", "l2", "--network", "good", "--mac", "01:00:5e:00:00:01"],
    /^error: mac: .*multicast/,
  ],
  [
    "interface name over 15 bytes",
    ["create", "c1", "--level", "l2", "--network", "good", "--ifname", "averyveryverylong0"],
    /^error: ifname: .*15 bytes/,
  ],
  [
    "exhausted pool",
    ["create", "c1", "--level", "l2", "--network", "tiny"],
    /^error: network "tiny": no free address/,
  ],
  ["no network", ["create", "c1", "--level", "l2"], /^error: networks: /],
  ["inspect unknown", ["inspect", "ghost"], /^error: context "ghost" does not exist/],
  [
    "unknown option",
    ["create", "c1", "--level", "l2", "--network", "good", "--colour", "red"],
    /^error: unknown option/,
  ],
];

for (const [what, args, message] of cases) {
  test(`refused: ${what}`, () => {
    const stateBefore = state();
    const kernelBefore = kernelSnapshot();
    const r = netctx(...args);
    assert.notEqual(r.code, 0, `exit code for ${args.join(" ")}`);
    assert.match(r.stderr.trimEnd(), message);
    assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /NaN|received|Invalid input|Too (small|big)/, "plain words");
    assert.equal(state(), stateBefore, "state unchanged");
    assert.equal(kernelSnapshot(), kernelBefore, "kernel unchanged");
  });
}

/** `netctx ARGS` as an unprivileged user (nobody), with `env` over the test's environment. */
function netctxAsNobody(env: Record<string, string>, ...args: string[]) {
  const r = spawnSync(
    "setpriv",
    ["--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all", NETCTX, ...args],
    { encoding: "utf8", env: { ...process.env, ...env }, timeout: 60_000 },
  );
  return { code: r.status ?? -1, stderr: r.stderr };
}

for (const [what, args] of [
  ["network create", ["network", "create", "n1", "--subnet", "10.90.0.0/24"]],
  ["create", ["create", "c1", "--level", "l2", "--network", "good"]],
  ["rm", ["rm", "first"]],
  ["ls", ["ls"]],
] as const) {
  test(`refused: ${what} when not root says "needs root", not a bare EPERM`, () => {
    const stateBefore = state();
    const kernelBefore = kernelSnapshot();
    // the test's own store (root's, mode 0700), and a store nobody may write, so the kernel is the one to refuse
    const own = mkdtempSync(join(tmpdir(), "netctx-nobody-"));
    chmodSync(own, 0o777);
    // with a store of its own, network create goes on to the kernel, which refuses nobody
    const envs = what === "network create" ? [{}, { NETCTX_STATE_DIR: own }] : [{}];
    for (const env of envs) {
      const r = netctxAsNobody(env, ...args);
      assert.notEqual(r.code, 0, `${args.join(" ")} as nobody`);
      assert.match(r.stderr, /^error: netctx needs root \(/, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
    }
    rmSync(own, { recursive: true, force: true });
    assert.equal(state(), stateBefore, "state unchanged");
    assert.equal(kernelSnapshot(), kernelBefore, "kernel unchanged");
  });
}
