import assert from "node:assert/strict";
import { before, test } from "node:test";
import { netctx, netctxOk, netctxState as state } from "../utils/cli.ts";
import { kernelSnapshot } from "../utils/kernel-oracle.ts";

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
});

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
    /^error: mtu: /,
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
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
    assert.equal(state(), stateBefore, "state unchanged");
    assert.equal(kernelSnapshot(), kernelBefore, "kernel unchanged");
  });
}
