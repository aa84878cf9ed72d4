/**
 * Shared-stack contexts from create to rm: what rm removes (cgroup, BPF programs, rules, table, addresses), a
 * mixed host with l2, l3 and socket contexts side by side, and bad input refused with nothing changed.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { querySocketPolicy } from "../../src/kernel/bpf/socket-policy.ts";
import { contextsCgroupParent } from "../../src/kernel/cgroup.ts";
import { netctx, netctxJson, netctxOk } from "../utils/cli.ts";
import { testConfig } from "../utils/config.ts";
import { ipj, kernelSnapshot, withoutRouteFlags } from "../utils/kernel-oracle.ts";
import { sh } from "../utils/shell.ts";
import { probeArgv, startProbe } from "../utils/socket-probe.ts";

interface View {
  name: string;
  level: string;
  status: string;
  addresses: string[];
  cgroup?: string;
  table?: number;
  netns?: string;
}

/** Everything a shared-stack context touches, beyond what kernelSnapshot covers. */
function sharedStackSnapshot(): Record<string, unknown> {
  const j = (args: string) => ipj(args.split(" "));
  const noFlags = withoutRouteFlags;
  return {
    kernel: noFlags(JSON.parse(kernelSnapshot())),
    rules4: j("-4 rule show"),
    rules6: j("-6 rule show"),
    tables4: noFlags(j("-4 route show table all")),
    // Link-local entries come and go with the bridges' carrier, on the kernel's own schedule.
    tables6: noFlags(
      (j("-6 route show table all") as { dst: string }[]).filter((r) => !r.dst.startsWith("fe80")),
    ),
    cgroups: readdirSync(contextsCgroupParent(testConfig().cgroupParent), { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name),
  };
}

describe("shared-stack lifecycle", () => {
  before(() => {
    netctxOk(
      "network",
      "create",
      "hn",
      "--driver",
      "host",
      "--subnet",
      "10.68.0.0/24",
      "--subnet",
      "fd68::/64",
    );
    netctxOk("network", "create", "br", "--driver", "bridge", "--subnet", "10.69.0.0/24");
  });

  after(() => {
    netctxOk("network", "rm", "hn", "br");
  });

  test("rm removes cgroup, programs, rules, table and addresses; refuses while processes run; rm twice is fine", async () => {
    const before = sharedStackSnapshot();
    netctxOk("create", "s", "--level", "socket", "--network", "hn");
    netctxOk("create", "t", "--level", "l3", "--network", "hn", "--route", "default via 10.68.0.254");
    const s = netctxJson<View>("inspect", "s");
    const t = netctxJson<View>("inspect", "t");
    for (const v of [s, t]) {
      assert.ok(v.cgroup && existsSync(v.cgroup), `cgroup of ${v.name}`);
      // l3 with a default route of its own adds the device guard (setsockopt and egress hooks).
      const hooks = v === t ? 12 : 10;
      assert.equal(querySocketPolicy(v.cgroup).length, hooks, `${hooks} hooks hold programs for ${v.name}`);
    }
    const onDevice = sh("ip -j addr show dev nc-hn");
    for (const a of [...s.addresses, ...t.addresses]) assert.ok(onDevice.includes(`"${a.split("/")[0]}"`), a);
    assert.notEqual(sh(`ip -j route show table ${t.table}`).trim(), "[]");

    // A process still in the context: rm refuses and undoes nothing (the programs stay attached).
    const running = startProbe(probeArgv([{ op: "listen-nobind" }, { op: "wait" }], { context: "s" }));
    await running.next();
    const refused = netctx("rm", "s");
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /^error: context: processes \d+ \([^)]*\)(, \d+ \([^)]*\))* still run in "s"; stop them or use --force to kill them\n$/,
    );
    assert.equal(netctxJson<View>("inspect", "s").status, "ready", "a refused rm changes nothing");
    assert.equal(querySocketPolicy(s.cgroup!).length, 10);
    await running.stop();

    netctxOk("rm", "s", "t");
    for (const v of [s, t]) {
      assert.equal(existsSync(v.cgroup!), false, `cgroup of ${v.name} removed`);
      assert.deepEqual(querySocketPolicy(v.cgroup!), [], "no program attached (the cgroup is gone)");
    }
    assert.equal(sh(`ip -j route show table ${t.table}`).trim(), "[]");
    assert.deepEqual(sharedStackSnapshot(), before, "rules, tables, addresses and cgroups as before");
    assert.deepEqual(netctxJson<View[]>("ls"), []);
    const again = netctx("rm", "--ignore", "s", "t");
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /context "s" does not exist/);
  });

  test("mixed host: l2, l3 and socket side by side; ls and inspect show level, addresses, cgroup, table", () => {
    netctxOk("create", "x2", "--level", "l2", "--network", "br");
    netctxOk("create", "y3", "--level", "l3", "--network", "hn", "--route", "default via 10.68.0.254");
    netctxOk("create", "zs", "--level", "socket", "--network", "hn");
    try {
      const list = netctxJson<View[]>("ls");
      assert.deepEqual(list.map((v) => [v.name, v.level, v.status]).sort(), [
        ["x2", "l2", "ready"],
        ["y3", "l3", "ready"],
        ["zs", "socket", "ready"],
      ]);
      const x = netctxJson<View>("inspect", "x2");
      const y = netctxJson<View>("inspect", "y3");
      const z = netctxJson<View>("inspect", "zs");
      assert.equal(x.level, "l2");
      assert.match(x.addresses[0]!, /^10\.69\.0\.\d+\/24$/);
      assert.ok(x.netns);
      assert.equal(x.cgroup, undefined, "an l2 context has no cgroup");
      assert.equal(x.table, undefined);
      assert.equal(y.level, "l3");
      assert.deepEqual(
        y.addresses.map((a) => a.replace(/\d+\/|[0-9a-f]+\//, "N/")),
        ["10.68.0.N/24", "fd68::N/64"],
      );
      assert.equal(y.cgroup, `${contextsCgroupParent(testConfig().cgroupParent)}/y3`);
      assert.ok(existsSync(y.cgroup!));
      assert.ok(y.table! >= 1000);
      assert.equal(z.level, "socket");
      assert.equal(z.cgroup, `${contextsCgroupParent(testConfig().cgroupParent)}/zs`);
      assert.equal(z.table, undefined, "a socket context has no table of its own");
      assert.equal(new Set([...y.addresses, ...z.addresses]).size, 4, "distinct addresses from one pool");
      // The l2 context is unaffected by the socket policies next to it: it reaches the bridge's gateway.
      assert.equal(
        sh(`nsenter --net=${x.netns} ping -c1 -W1 -q 10.69.0.1 >/dev/null && echo ok || echo no`).trim(),
        "ok",
      );
    } finally {
      netctxOk("rm", "x2", "y3", "zs");
    }
  });

  describe("bad input: one line naming the field, nothing changed", () => {
    const cases: [string, string[], RegExp][] = [
      [
        "--route on a socket context",
        ["create", "p", "--level", "socket", "--network", "hn", "--route", "default via 10.68.0.254"],
        /^error: route: only l3/,
      ],
      [
        "--route on an l2 context",
        ["create", "p", "--level", "l2", "--network", "br", "--route", "default via 10.69.0.254"],
        /^error: route: only l3/,
      ],
      [
        "--route without a gateway for default",
        ["create", "p", "--level", "l3", "--network", "hn", "--route", "default"],
        /^error: route: .*needs "via GATEWAY"/,
      ],
      [
        "--route with via but no address",
        ["create", "p", "--level", "l3", "--network", "hn", "--route", "default via"],
        /^error: route: "via" needs a value/,
      ],
      [
        "--route with a bad gateway",
        ["create", "p", "--level", "l3", "--network", "hn", "--route", "default via 10.68.0.999"],
        /^error: route: /,
      ],
      [
        "--route with a bad prefix",
        ["create", "p", "--level", "l3", "--network", "hn", "--route", "10.0.0.0/33 via 10.68.0.254"],
        /^error: route: /,
      ],
      [
        "--route with an unknown word",
        ["create", "p", "--level", "l3", "--network", "hn", "--route", "default via 10.68.0.254 dev eth0"],
        /^error: route: unknown word "dev"/,
      ],
      [
        "--route mixing families",
        ["create", "p", "--level", "l3", "--network", "hn", "--route", "10.0.0.0/8 via fd68::1"],
        /^error: route: .*family/,
      ],
      [
        "two default routes",
        [
          "create",
          "p",
          "--level",
          "l3",
          "--network",
          "hn",
          "--route",
          "default via 10.68.0.254",
          "--route",
          "default via 10.68.0.253",
        ],
        /^error: route: two routes to default/,
      ],
      [
        "an l2 context on a host network",
        ["create", "p", "--level", "l2", "--network", "hn"],
        /^error: level: network "hn" \(driver host\) does not serve level l2/,
      ],
      [
        "an l3 context on a bridge network",
        ["create", "p", "--level", "l3", "--network", "br"],
        /^error: level: network "br" \(driver bridge\) does not serve level l3/,
      ],
      [
        "a socket context on a bridge network",
        ["create", "p", "--level", "socket", "--network", "br"],
        /^error: level: .*does not serve level socket/,
      ],
    ];
    const state = () => ({ ...sharedStackSnapshot(), ls: netctxOk("ls", "--json") });
    let baseline: ReturnType<typeof state>;
    before(() => {
      baseline = state();
    });
    for (const [what, args, message] of cases) {
      test(what, () => {
        const r = netctx(...args);
        assert.equal(r.code, 1, r.stdout);
        assert.match(r.stderr, message);
        assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
        assert.deepEqual(state(), baseline);
      });
    }

    test("an IPv6 route on a network without IPv6", () => {
      netctxOk("network", "create", "h4", "--driver", "host", "--subnet", "10.70.0.0/24");
      try {
        const r = netctx("create", "p", "--level", "l3", "--network", "h4", "--route", "default via fd70::1");
        assert.equal(r.code, 1);
        assert.match(r.stderr, /^error: route: .*no IPv6 subnet\n$/);
      } finally {
        netctxOk("network", "rm", "h4");
      }
    });
  });
});
