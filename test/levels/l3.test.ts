/**
 * Level l3 through the CLI: two contexts on one host network with different default gateways. Two upstream
 * namespaces hang off the network's bridge and hold the same far addresses; each answers with its name, so the
 * upstream a connection reached shows which table routed it.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { execScript, netctxJson, netctxOk } from "../utils/cli.ts";
import { type IpRoute, type IpRule, ipj } from "../utils/kernel-oracle.ts";
import { sh } from "../utils/shell.ts";
import { probe } from "../utils/socket-probe.ts";
import { startUpstream, type Upstream } from "../utils/upstream.ts";

const FAR4 = "198.51.100.9";
const FAR6 = "2001:db8:9::9";
const PORT = 7000;

const ipJson = <T>(args: string): T[] => ipj<T>(args.split(" "));
const mainTables = () =>
  JSON.stringify([ipJson<IpRoute>("-4 route show table main"), ipJson<IpRoute>("-6 route show table main")]);

interface View {
  addresses: string[];
  table: number;
  cgroup: string;
}

describe("level l3", () => {
  const ups: Upstream[] = [];
  let mainBefore = "";
  let a: View;
  let b: View;

  before(async () => {
    netctxOk(
      "network",
      "create",
      "hn",
      "--driver",
      "host",
      "--subnet",
      "10.67.0.0/24",
      "--subnet",
      "fd67::/64",
    );
    for (const [name, last] of [
      ["up1", "254"],
      ["up2", "253"],
    ] as const)
      ups.push(
        await startUpstream({
          name,
          bridge: "nc-hn",
          addresses: [`10.67.0.${last}/24`, `fd67::${Number(last).toString(16)}/64`],
          far: [`${FAR4}/32`, `${FAR6}/128`],
          port: PORT,
        }),
      );
    mainBefore = mainTables();
    netctxOk(
      "create",
      "a",
      "--level",
      "l3",
      "--network",
      "hn",
      "--route",
      "default via 10.67.0.254",
      "--route",
      "default via fd67::fe",
    );
    netctxOk(
      "create",
      "b",
      "--level",
      "l3",
      "--network",
      "hn",
      "--route",
      "default via 10.67.0.253",
      "--route",
      "default via fd67::fd",
    );
    a = netctxJson<View>("inspect", "a");
    b = netctxJson<View>("inspect", "b");
  });

  after(() => {
    // The upstream servers first: a failing removal must not leave them holding this file open.
    for (const u of ups) u.stop();
    netctxOk("rm", "--ignore", "a", "b");
    netctxOk("network", "rm", "hn");
  });

  const ip = (v: View, family: 4 | 6) =>
    v.addresses.map((c) => c.split("/")[0]!).find((x) => x.includes(":") === (family === 6))!;

  test("each context's traffic leaves through its own gateway, with its own source, v4 and v6", async () => {
    const [a4, a6] = await probe({ context: "a" }, [
      { op: "tcp", host: FAR4, port: PORT },
      { op: "tcp", host: FAR6, port: PORT },
    ]);
    const [b4, b6] = await probe({ context: "b" }, [
      { op: "tcp", host: FAR4, port: PORT },
      { op: "tcp", host: FAR6, port: PORT },
    ]);
    assert.equal(a4!.data, `up1 ${ip(a, 4)}`, JSON.stringify(a4));
    assert.equal(a6!.data, `up1 ${ip(a, 6)}`, JSON.stringify(a6));
    assert.equal(b4!.data, `up2 ${ip(b, 4)}`, JSON.stringify(b4));
    assert.equal(b6!.data, `up2 ${ip(b, 6)}`, JSON.stringify(b6));
    // Control: the host itself has no route to the far addresses (its main table has no default route).
    const [host4] = await probe(undefined, [{ op: "tcp", host: FAR4, port: PORT }]);
    assert.equal(host4!.ok, false);
  });

  test("the context's sockets carry its table as fwmark", async () => {
    const [mark] = await probe({ context: "a" }, [{ op: "mark" }]);
    assert.equal(mark!.value, a.table);
  });

  test("the host's main table is unchanged", () => {
    assert.equal(mainTables(), mainBefore);
  });

  test("ip rule: one rule set per context (fwmark and from each address), nothing else added", () => {
    for (const family of [4, 6] as const) {
      const rules = ipJson<IpRule>(`-${family} rule show`).filter((r) => r.priority === 1000);
      const expected = [a, b].flatMap((v) => [
        { fwmark: `0x${v.table.toString(16)}`, table: String(v.table) },
        { src: ip(v, family), table: String(v.table) },
      ]);
      assert.deepEqual(
        rules.map((r) => (r.fwmark ? { fwmark: r.fwmark, table: r.table } : { src: r.src, table: r.table })),
        expected,
      );
      const all = ipJson<IpRule>(`-${family} rule show`).map((r) => r.priority);
      assert.deepEqual(
        all,
        family === 4 ? [0, 1000, 1000, 1000, 1000, 32766, 32767] : [0, 1000, 1000, 1000, 1000, 32766],
      );
    }
    assert.notEqual(a.table, b.table);
  });

  test("ip route show table N: connected routes with the context's source and its default route", () => {
    for (const [v, gw4, gw6] of [
      [a, "10.67.0.254", "fd67::fe"],
      [b, "10.67.0.253", "fd67::fd"],
    ] as const) {
      const r4 = ipJson<IpRoute>(`-4 route show table ${v.table}`);
      assert.deepEqual(
        r4.map((r) => ({ dst: r.dst, gateway: r.gateway, dev: r.dev, prefsrc: r.prefsrc })),
        [
          { dst: "default", gateway: gw4, dev: "nc-hn", prefsrc: undefined },
          { dst: "10.67.0.0/24", gateway: undefined, dev: "nc-hn", prefsrc: ip(v, 4) },
        ],
      );
      const r6 = ipJson<IpRoute>(`-6 route show table ${v.table}`);
      assert.deepEqual(
        r6
          .map((r) => ({ dst: r.dst, gateway: r.gateway, dev: r.dev, prefsrc: r.prefsrc }))
          .sort((x, y) => x.dst.localeCompare(y.dst)),
        [
          { dst: "default", gateway: gw6, dev: "nc-hn", prefsrc: undefined },
          { dst: "fd67::/64", gateway: undefined, dev: "nc-hn", prefsrc: ip(v, 6) },
        ],
      );
    }
  });

  test("a's traffic never uses b's table: by mark, by source, and both", () => {
    const via = (args: string) => ipJson<IpRoute>(`route get ${args}`)[0]?.gateway;
    for (const [v, gw] of [
      [a, "10.67.0.254"],
      [b, "10.67.0.253"],
    ] as const) {
      assert.equal(via(`${FAR4} mark ${v.table}`), gw);
      assert.equal(via(`${FAR4} from ${ip(v, 4)}`), gw);
      assert.equal(via(`${FAR4} from ${ip(v, 4)} mark ${v.table}`), gw);
    }
    const outside = JSON.parse(sh(`ip -j route get ${FAR4} 2>/dev/null || echo []`)) as IpRoute[];
    assert.deepEqual(outside, [], "without mark or source the host's own lookup finds no route");
  });

  test("a context without a default route falls through to main; one with it does not see main's routes", async () => {
    sh(`ip route add ${FAR4}/32 via 10.67.0.253`);
    try {
      netctxOk("create", "c", "--level", "l3", "--network", "hn");
      const [c4] = await probe({ context: "c" }, [{ op: "tcp", host: FAR4, port: PORT }]);
      const [a4] = await probe({ context: "a" }, [{ op: "tcp", host: FAR4, port: PORT }]);
      assert.match(c4!.data ?? JSON.stringify(c4), /^up2 /, "c has no default route: main's route to up2");
      assert.match(
        a4!.data ?? JSON.stringify(a4),
        /^up1 /,
        "a's own default route wins over main's host route",
      );
    } finally {
      netctxOk("rm", "c");
      sh(`ip route del ${FAR4}/32 via 10.67.0.253`);
    }
  });

  test("a new context skips tables another tool uses: one holding a route, one a rule points to", () => {
    const next = Math.max(a.table, b.table) + 1;
    sh(`ip -6 route add fd99::/64 dev lo table ${next}`);
    sh(`ip -4 rule add from 192.0.2.77 lookup ${next + 1} pref 3000`);
    try {
      netctxOk("create", "d", "--level", "l3", "--network", "hn");
      const d = netctxJson<View>("inspect", "d");
      assert.equal(d.table, next + 2);
      assert.deepEqual(
        ipJson<IpRoute>(`-6 route show table ${next}`).map((r) => r.dst),
        ["fd99::/64"],
        "the foreign route is untouched",
      );
    } finally {
      netctxOk("rm", "d");
      sh(`ip -6 route del fd99::/64 dev lo table ${next}`);
      sh(`ip -4 rule del from 192.0.2.77 lookup ${next + 1} pref 3000`);
    }
  });

  test("rm a leaves b's rules, table and traffic intact", async () => {
    netctxOk("rm", "a");
    const rules = ipJson<IpRule>("-4 rule show").filter((r) => r.priority === 1000);
    assert.deepEqual(
      rules.map((r) => r.table),
      [String(b.table), String(b.table)],
    );
    assert.deepEqual(ipJson<IpRoute>(`-4 route show table ${a.table}`), []);
    const [b4] = await probe({ context: "b" }, [{ op: "tcp", host: FAR4, port: PORT }]);
    assert.equal(b4!.data, `up2 ${ip(b, 4)}`);
    const r = await execScript(
      "b",
      "ip route add default via 10.67.0.254 table 1000 2>/dev/null && echo ok || echo refused",
    );
    assert.equal(r.stdout.trim(), "refused");
  });
});
