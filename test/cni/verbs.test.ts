import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { contextNameFor } from "../../src/cni/verbs.ts";
import { Store } from "../../src/state/store.ts";
import { netctxJson, netctxOk } from "../utils/cli.ts";
import { type CniResult, cni, cniOk, cniRaw } from "../utils/cni-runtime.ts";
import { testConfig } from "../utils/config.ts";
import {
  addressesOf,
  ipLinkNames as hostLinkNames,
  links,
  nftRuleset,
  routes,
} from "../utils/kernel-oracle.ts";
import { addNetns, delNetns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";

const conf = (extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.0.0",
  name: "cnia",
  type: "netctx",
  subnets: ["10.71.0.0/24", "fd71::/64"],
  nat: true,
  ...extra,
});

function leasesOf(owner: string): number {
  const store = Store.open(testConfig().stateDir);
  try {
    return store.leases({ owner }).length;
  } finally {
    store.close();
  }
}

test("VERSION lists 0.4.0, 1.0.0 and 1.1.0 and answers in the asked version", () => {
  const r = cniRaw({ CNI_COMMAND: "VERSION" }, JSON.stringify({ cniVersion: "1.1.0" }));
  assert.equal(r.code, 0, r.stdout);
  assert.deepEqual(r.json, { cniVersion: "1.1.0", supportedVersions: ["0.4.0", "1.0.0", "1.1.0"] });
  const bare = cniRaw({ CNI_COMMAND: "VERSION" }, "");
  assert.equal(bare.code, 0);
  assert.ok(((bare.json?.supportedVersions ?? []) as string[]).includes("1.0.0"));
});

test("bad input is the spec's JSON error with its code", () => {
  const cases: [string, { env: Record<string, string>; stdin: string }, number, RegExp][] = [
    ["no CNI_COMMAND", { env: {}, stdin: JSON.stringify(conf()) }, 4, /CNI_COMMAND is not set/],
    ["unknown verb", { env: { CNI_COMMAND: "FROB" }, stdin: JSON.stringify(conf()) }, 4, /FROB/],
    [
      "ADD without CNI_NETNS",
      {
        env: { CNI_COMMAND: "ADD", CNI_CONTAINERID: "x1", CNI_IFNAME: "eth0" },
        stdin: JSON.stringify(conf()),
      },
      4,
      /CNI_NETNS is not set/,
    ],
    [
      "malformed JSON",
      {
        env: { CNI_COMMAND: "ADD", CNI_CONTAINERID: "x1", CNI_IFNAME: "eth0", CNI_NETNS: "/run/netns/x" },
        stdin: "{nope",
      },
      6,
      /not valid JSON/,
    ],
    [
      "unknown config key",
      {
        env: { CNI_COMMAND: "DEL", CNI_CONTAINERID: "x1", CNI_IFNAME: "eth0" },
        stdin: JSON.stringify(conf({ subnet: "10.1.0.0/24" })),
      },
      7,
      /unknown key "subnet"/,
    ],
    [
      "wrong type",
      {
        env: { CNI_COMMAND: "DEL", CNI_CONTAINERID: "x1", CNI_IFNAME: "eth0" },
        stdin: JSON.stringify(conf({ mtu: "big" })),
      },
      7,
      /mtu/,
    ],
    [
      "unsupported version",
      {
        env: { CNI_COMMAND: "DEL", CNI_CONTAINERID: "x1", CNI_IFNAME: "eth0" },
        stdin: JSON.stringify(conf({ cniVersion: "0.2.0" })),
      },
      1,
      /0\.2\.0/,
    ],
    [
      "unknown CNI_ARGS key",
      {
        env: { CNI_COMMAND: "DEL", CNI_CONTAINERID: "x1", CNI_IFNAME: "eth0", CNI_ARGS: "FOO=1" },
        stdin: JSON.stringify(conf()),
      },
      4,
      /FOO/,
    ],
    [
      "netns that does not exist",
      {
        env: { CNI_COMMAND: "ADD", CNI_CONTAINERID: "x1", CNI_IFNAME: "eth0", CNI_NETNS: "/run/netns/none" },
        stdin: JSON.stringify(conf()),
      },
      3,
      /does not exist/,
    ],
    [
      "netns that is a plain directory",
      {
        env: { CNI_COMMAND: "ADD", CNI_CONTAINERID: "x1", CNI_IFNAME: "eth0", CNI_NETNS: "/tmp" },
        stdin: JSON.stringify(conf()),
      },
      4,
      /CNI_NETNS \/tmp is not a network namespace/,
    ],
  ];
  for (const [what, input, code, msg] of cases) {
    const r = cniRaw(input.env, input.stdin);
    assert.notEqual(r.code, 0, what);
    assert.equal(r.json?.code, code, `${what}: ${r.stdout}`);
    assert.match(String(r.json?.msg), msg, what);
    assert.equal(typeof r.json?.cniVersion, "string", what);
  }
  assert.deepEqual(netctxJson("ls"), [], "no bad input left a context behind");
});

test("ADD makes the runtime's netns an l2 context: result, kernel, traffic; DEL twice is fine", () => {
  const nsA = addNetns("ca");
  const nsB = addNetns("cb");
  const a = cniOk("ADD", conf(), { id: "aaaa", netns: nsA }) as unknown as CniResult;
  const b = cniOk("ADD", conf(), { id: "bbbb", netns: nsB }) as unknown as CniResult;
  assert.equal(a.cniVersion, "1.0.0");
  const eth0 = a.interfaces.findIndex((i) => i.name === "eth0" && i.sandbox === nsA);
  assert.ok(eth0 >= 0, JSON.stringify(a.interfaces));
  assert.ok(
    a.ips.every((ip) => ip.interface === eth0 && ip.version === undefined),
    "1.0.0 ips carry no version",
  );
  assert.deepEqual(addressesOf(nsA, "eth0").sort(), a.ips.map((ip) => ip.address).sort());
  assert.equal(a.interfaces[eth0]!.mac, links(nsA).find((l) => l.ifname === "eth0")?.address);
  assert.deepEqual(a.routes, [
    { dst: "0.0.0.0/0", gw: "10.71.0.1" },
    { dst: "::/0", gw: "fd71::1" },
  ]);
  assert.equal(routes(4, nsA).find((r) => r.dst === "default")?.gateway, "10.71.0.1");
  for (const ip of b.ips) assert.ok(ping(nsA, ip.address.split("/")[0]!), `a -> b ${ip.address}`);

  const name = contextNameFor("aaaa", "eth0");
  assert.match(name, /^c[0-9a-f]{11}$/);
  const host = `nc-${name}`;
  assert.ok(hostLinkNames().includes(host));
  assert.equal(cni("DEL", conf(), { id: "aaaa", netns: nsA }).code, 0);
  assert.equal(cni("DEL", conf(), { id: "aaaa", netns: nsA }).code, 0, "second DEL succeeds");
  assert.ok(!hostLinkNames().includes(host), "host veth removed");
  assert.deepEqual(addressesOf(nsA, "eth0"), [], "container side removed with its veth");
  assert.equal(leasesOf(name), 0);
  assert.ok(spawnSync("ip", ["netns", "pids", "ca"]).status === 0, "the runtime's netns is still there");
  cniOk("DEL", conf(), { id: "bbbb", netns: nsB });
  delNetns("ca");
  delNetns("cb");
});

test("results in 0.4.0 carry ip versions, 1.1.0 interface MTUs", () => {
  const ns = addNetns("cv");
  const r04 = cniOk("ADD", conf({ cniVersion: "0.4.0" }), { id: "v04", netns: ns }) as unknown as CniResult;
  assert.equal(r04.cniVersion, "0.4.0");
  assert.deepEqual(r04.ips.map((ip) => ip.version).sort(), ["4", "6"]);
  const r11 = cniOk("ADD", conf({ cniVersion: "1.1.0" }), {
    id: "v11",
    netns: ns,
    ifname: "net1",
  }) as unknown as CniResult;
  assert.equal(r11.cniVersion, "1.1.0");
  assert.equal(r11.interfaces.find((i) => i.name === "net1")?.mtu, 1500);
  assert.ok(r11.ips.every((ip) => ip.version === undefined));
  assert.deepEqual(addressesOf(ns, "net1").sort(), r11.ips.map((i) => i.address).sort());
  cniOk("DEL", conf(), { id: "v04", netns: ns });
  cniOk("DEL", conf(), { id: "v11", netns: ns, ifname: "net1" });
  delNetns("cv");
});

test("CNI_ARGS IP=/MAC= and runtimeConfig ips/mac are honoured", () => {
  const ns1 = addNetns("cip1");
  const ns2 = addNetns("cip2");
  const r1 = cniOk("ADD", conf(), {
    id: "ip1",
    netns: ns1,
    args: "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.71.0.50;MAC=02:00:00:00:00:50",
  }) as unknown as CniResult;
  assert.ok(
    r1.ips.some((ip) => ip.address === "10.71.0.50/24"),
    JSON.stringify(r1.ips),
  );
  assert.equal(links(ns1).find((l) => l.ifname === "eth0")?.address, "02:00:00:00:00:50");
  const r2 = cniOk(
    "ADD",
    conf({
      capabilities: { ips: true, mac: true },
      runtimeConfig: { ips: ["10.71.0.60/24"], mac: "02:00:00:00:00:60" },
    }),
    { id: "ip2", netns: ns2 },
  ) as unknown as CniResult;
  assert.ok(r2.ips.some((ip) => ip.address === "10.71.0.60/24"));
  assert.equal(links(ns2).find((l) => l.ifname === "eth0")?.address, "02:00:00:00:00:60");
  const taken = cni("ADD", conf(), { id: "ip3", netns: ns2, ifname: "eth1", args: "IP=10.71.0.50" });
  assert.notEqual(taken.code, 0);
  assert.match(String(taken.json?.msg), /10\.71\.0\.50/);
  for (const [id, ns] of [
    ["ip1", ns1],
    ["ip2", ns2],
  ] as const)
    cniOk("DEL", conf(), { id, netns: ns });
  delNetns("cip1");
  delNetns("cip2");
});

test("CHECK verifies the kernel against the record and prevResult", () => {
  const ns = addNetns("cchk");
  const prev = cniOk("ADD", conf(), { id: "chk", netns: ns });
  assert.equal(cni("CHECK", conf({ prevResult: prev }), { id: "chk", netns: ns }).code, 0);
  const noPrev = cni("CHECK", conf(), { id: "chk", netns: ns });
  assert.equal(noPrev.json?.code, 7);
  spawnSync("ip", ["-n", "cchk", "addr", "del", "10.71.0.2/24", "dev", "eth0"]);
  const broken = cni("CHECK", conf({ prevResult: prev }), { id: "chk", netns: ns });
  assert.notEqual(broken.code, 0);
  assert.match(String(broken.json?.msg), /10\.71\.0\.2\/24 is missing/);
  spawnSync("ip", ["-n", "cchk", "route", "del", "default"]);
  spawnSync("ip", ["-n", "cchk", "addr", "add", "10.71.0.2/24", "dev", "eth0"]);
  const noRoute = cni("CHECK", conf({ prevResult: prev }), { id: "chk", netns: ns });
  assert.match(String(noRoute.json?.msg), /route 0\.0\.0\.0\/0 via 10\.71\.0\.1 is missing/);
  const unknown = cni("CHECK", conf({ prevResult: prev }), { id: "nobody", netns: ns });
  assert.equal(unknown.json?.code, 3);
  cniOk("DEL", conf(), { id: "chk", netns: ns });
  delNetns("cchk");
});

test("CHECK also fails on what gc would put back on the host side: a lost guard, a lost bridge", () => {
  const ns = addNetns("chost");
  const prev = cniOk("ADD", conf(), { id: "hst", netns: ns }) as unknown as CniResult;
  assert.equal(cni("CHECK", conf({ prevResult: prev }), { id: "hst", netns: ns }).code, 0);
  const veth = prev.interfaces.find((i) => !i.sandbox && i.name !== "nc-cnia")?.name;
  assert.ok(veth, JSON.stringify(prev.interfaces));
  // The engine's anti-spoofing element for the container's port, gone behind its back.
  spawnSync("nft", ["delete", "element", "bridge", "netctx", "as_ports", `{ "${veth}" }`]);
  const unguarded = cni("CHECK", conf({ prevResult: prev }), { id: "hst", netns: ns });
  assert.notEqual(unguarded.code, 0);
  assert.match(String(unguarded.json?.msg), new RegExp(`antispoof port ${veth} is missing`));
  netctxOk("gc");
  assert.equal(cni("CHECK", conf({ prevResult: prev }), { id: "hst", netns: ns }).code, 0, "gc put it back");
  spawnSync("ip", ["link", "del", "nc-cnia"]);
  const bridgeless = cni("CHECK", conf({ prevResult: prev }), { id: "hst", netns: ns });
  assert.match(String(bridgeless.json?.msg), /network cnia is missing/);
  netctxOk("gc");
  assert.equal(
    cni("CHECK", conf({ prevResult: prev }), { id: "hst", netns: ns }).code,
    0,
    "gc made it again",
  );
  cniOk("DEL", conf(), { id: "hst", netns: ns });
  delNetns("chost");
});

test("DEL after the runtime deleted the netns leaves no nft element, route, lease or host veth", () => {
  const routed = {
    name: "cnir",
    network: "cnir",
    driver: "routed",
    subnets: ["10.72.0.0/24", "fd72::/64"],
    nat: true,
  };
  const ns = addNetns("cgone");
  const r = cniOk("ADD", conf(routed), { id: "gone", netns: ns }) as unknown as CniResult;
  const name = contextNameFor("gone", "eth0");
  const host = `nc-${name}`;
  assert.ok(nftRuleset().includes(host), "routed attachment has its interface element");
  assert.ok(
    routes(4).some((x) => x.dev === host),
    "host route to the container",
  );
  assert.equal(r.ips.find((ip) => ip.address.includes("."))?.address, "10.72.0.2/32");
  delNetns("cgone");
  const del = cni("DEL", conf(routed), { id: "gone", netns: ns });
  assert.equal(del.code, 0, del.stdout);
  assert.ok(!nftRuleset().includes(host), "nft element removed");
  assert.ok(!routes(4).some((x) => x.dev === host), "host route removed");
  assert.ok(!hostLinkNames().includes(host), "host veth removed");
  assert.equal(leasesOf(name), 0, "lease released");
  assert.equal(cni("DEL", conf(routed), { id: "gone" }).code, 0, "DEL without CNI_NETNS is fine too");
  // The address is free again for the next container.
  const again = addNetns("cagain");
  const r2 = cniOk("ADD", conf(routed), { id: "again", netns: again }) as unknown as CniResult;
  assert.equal(r2.ips.find((ip) => ip.address.includes("."))?.address, "10.72.0.2/32");
  cniOk("DEL", conf(routed), { id: "again", netns: again });
  delNetns("cagain");
});

test("GC removes the attachments the runtime no longer lists, only for its own config", () => {
  const g = { name: "cnig", subnets: ["10.73.0.0/24"] };
  const ids = ["g1", "g2", "g3"];
  for (const id of ids) cniOk("ADD", conf(g), { id, netns: addNetns(`n${id}`) });
  cniOk("ADD", conf(), { id: "other", netns: addNetns("nother") });
  const bad = cniRaw({ CNI_COMMAND: "GC" }, JSON.stringify(conf({ ...g, cniVersion: "1.1.0" })));
  assert.equal(bad.json?.code, 7, "GC without valid-attachments is refused, not a wipe");
  const gc = cniRaw(
    { CNI_COMMAND: "GC" },
    JSON.stringify(
      conf({
        ...g,
        cniVersion: "1.1.0",
        "cni.dev/valid-attachments": [{ containerID: "g2", ifname: "eth0" }],
      }),
    ),
  );
  assert.equal(gc.code, 0, gc.stdout);
  const left = netctxJson<{ name: string }[]>("ls")
    .map((c) => c.name)
    .sort();
  assert.deepEqual(left, [contextNameFor("g2", "eth0"), contextNameFor("other", "eth0")].sort());
  for (const id of ["g1", "g3"]) {
    assert.ok(!hostLinkNames().includes(`nc-${contextNameFor(id, "eth0")}`));
    assert.equal(leasesOf(contextNameFor(id, "eth0")), 0);
  }
  cniOk("DEL", conf(g), { id: "g2", netns: "/run/netns/ng2" });
  cniOk("DEL", conf(), { id: "other", netns: "/run/netns/nother" });
  for (const id of [...ids, "other"]) delNetns(`n${id}`);
});

test("chained after another plugin, the previous result passes through with shifted interface indexes", () => {
  const ns = addNetns("cchain");
  const prevResult = {
    cniVersion: "1.0.0",
    interfaces: [{ name: "dummy0", sandbox: ns }],
    ips: [{ address: "192.0.2.9/24", interface: 0 }],
    routes: [{ dst: "198.51.100.0/24" }],
    dns: { nameservers: ["192.0.2.53"] },
  };
  const r = cniOk("ADD", conf({ prevResult }), { id: "chain", netns: ns }) as unknown as CniResult;
  assert.equal(r.interfaces[0]?.name, "dummy0");
  assert.deepEqual(r.ips[0], { address: "192.0.2.9/24", interface: 0 });
  const eth0 = r.interfaces.findIndex((i) => i.name === "eth0");
  assert.ok(eth0 > 0);
  assert.ok(r.ips.slice(1).every((ip) => ip.interface === eth0));
  assert.deepEqual(r.routes[0], { dst: "198.51.100.0/24" });
  // Ours first (glibc asks the first nameserver first), the previous plugin's kept after.
  assert.deepEqual(r.dns, {
    nameservers: ["10.71.0.1", "fd71::1", "192.0.2.53"],
    search: ["cnia.netctx"],
  });
  cniOk("DEL", conf({ prevResult: r }), { id: "chain", netns: ns });
  delNetns("cchain");
});

test("STATUS, and a config naming an existing netctx network", () => {
  assert.equal(cniRaw({ CNI_COMMAND: "STATUS" }, JSON.stringify(conf({ cniVersion: "1.1.0" }))).code, 0);
  const missing = cniRaw(
    { CNI_COMMAND: "STATUS" },
    JSON.stringify({ cniVersion: "1.1.0", name: "x", type: "netctx", network: "nosuch" }),
  );
  assert.equal(missing.json?.code, 50);
  netctxOk("network", "create", "pre", "--driver", "bridge", "--subnet", "10.74.0.0/24");
  const ns = addNetns("cpre");
  const r = cniOk(
    "ADD",
    { cniVersion: "1.0.0", name: "anything", type: "netctx", network: "pre" },
    { id: "pre", netns: ns },
  ) as unknown as CniResult;
  assert.equal(r.ips[0]?.address, "10.74.0.2/24");
  assert.equal(links().find((l) => l.ifname === `nc-${contextNameFor("pre", "eth0")}`)?.master, "nc-pre");
  cniOk(
    "DEL",
    { cniVersion: "1.0.0", name: "anything", type: "netctx", network: "pre" },
    { id: "pre", netns: ns },
  );
  delNetns("cpre");
});
