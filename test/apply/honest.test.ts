/**
 * apply is honest (issue 17, item 5): --dry-run refuses what the real apply refuses, --prune removes only what an
 * earlier apply of the same scene made, apply never takes over what it did not make, a network whose options change
 * is replaced or the error says how to proceed, and a refused apply changes nothing.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, test } from "node:test";
import { type CliResult, netctx, netctxJson, netctxOk, netctxState } from "../utils/cli.ts";
import { must } from "../utils/shell.ts";
import { storeState } from "../utils/state-oracle.ts";
import { eventually } from "../utils/wait.ts";

const dir = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH ?? "/tmp", "honest-"));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/**
 * The store's records (read through the library: everything `state export` and `ls` show is a view of them, and a
 * look is three CLIs fewer), and the kernel as iproute2 and nft dump it: compared byte for byte.
 */
function dumps(): Record<string, string> {
  // A new bridge's link-local address stays "tentative" for a second or so (DAD): wait for it, not for a change.
  eventually(() => must(["ip", "-j", "addr", "show"]).includes('"tentative"'), false);
  return {
    state: storeState(),
    links: must(["ip", "-j", "link", "show"]),
    addrs: must(["ip", "-j", "addr", "show"]),
    routes4: must(["ip", "-j", "-4", "route", "show", "table", "all"]),
    routes6: must(["ip", "-j", "-6", "route", "show", "table", "all"]),
    rules: must(["ip", "-j", "rule", "show"]),
    netns: must(["ip", "netns", "list"]),
    nft: must(["nft", "-j", "list", "ruleset"]),
  };
}

function assertUnchanged(was: Record<string, string>, label: string): void {
  const now = dumps();
  for (const key of Object.keys(was)) assert.equal(now[key], was[key], `${label}: ${key} changed`);
}

/** A refusal: non-zero, one line on stderr, nothing on the host changed. */
function refused(r: CliResult, was: Record<string, string>, label: string): void {
  assert.notEqual(r.code, 0, `${label}: accepted: ${r.stdout}`);
  assert.match(r.stderr, /^error: [^\n]+\n$/, `${label}: not one line: ${r.stderr}`);
  assertUnchanged(was, label);
}

const names = () => ({
  contexts: netctxJson<{ name: string }[]>("ls")
    .map((c) => c.name)
    .sort(),
  networks: netctxJson<{ name: string }[]>("network", "ls")
    .map((n) => n.name)
    .sort(),
});

before(() => {
  // Made by hand with the CLI: no apply may remove or change these.
  netctxOk("network", "create", "hand", "--driver", "bridge", "--subnet", "10.71.0.0/24");
  netctxOk("network", "create", "hostn", "--driver", "host", "--subnet", "10.74.0.0/24");
  netctxOk(
    "create",
    "solo",
    "--level",
    "l2",
    "--network",
    "hand",
    "--ip",
    "10.71.0.10",
    "--publish",
    "8080:80",
  );
});

const NET = "networks:\n  - { name: sa-net, driver: bridge, subnets: [10.72.0.0/24] }\n";

/** Files the real apply refuses; each line: what, the file, the error it must give (dry run and real alike). */
const refusedFiles: [string, string, RegExp][] = [
  [
    "routes on an l2 context, on a network the same file declares",
    `${NET}contexts:\n  - { name: r1, level: l2, networks: [sa-net], routes: ["default via 10.72.0.1"] }\n`,
    /^error: contexts\[0\]: route: only l3 contexts have a routing table of their own/,
  ],
  [
    "a subnet overlapping a network made by hand",
    "networks:\n  - { name: ov, driver: bridge, subnets: [10.71.0.128/25] }\n",
    /^error: networks\[0\]: subnet: 10\.71\.0\.128\/25 overlaps network "hand"/,
  ],
  [
    "two networks of the file overlapping each other",
    "networks:\n  - { name: o1, driver: bridge, subnets: [10.73.0.0/24] }\n  - { name: o2, driver: routed, subnets: [10.73.0.0/16] }\n",
    /^error: networks\[1\]: subnet: 10\.73\.0\.0\/16 overlaps network "o1"/,
  ],
  [
    "a network name too long for its device",
    "networks:\n  - { name: abcdefghijklmn, driver: bridge, subnets: [10.75.0.0/24] }\n",
    /^error: networks\[0\]: name: /,
  ],
  [
    "an unknown driver",
    "networks:\n  - { name: uk, driver: vxlan9, subnets: [10.75.0.0/24] }\n",
    /^error: networks\[0\]: /,
  ],
  [
    "a gateway outside its subnet",
    "networks:\n  - { name: gw, driver: bridge, subnets: [10.75.0.0/24], gateways: [10.76.0.1] }\n",
    /^error: networks\[0\]: gateway: 10\.76\.0\.1 is outside/,
  ],
  [
    "a NAT macvlan network (the driver's own check)",
    "networks:\n  - { name: mv, driver: macvlan, subnets: [10.75.0.0/24], nat: true, options: { parent: lo } }\n",
    /^error: networks\[0\]: /,
  ],
  [
    "an address a hand-made context holds",
    `${NET}contexts:\n  - { name: t1, level: l2, networks: [hand], ips: [10.71.0.10] }\n`,
    /^error: contexts\[0\]: ip: 10\.71\.0\.10 is already in use by "solo"/,
  ],
  [
    "an address outside the network the file declares",
    `${NET}contexts:\n  - { name: t2, level: l2, networks: [sa-net], ips: [10.71.0.99] }\n`,
    /^error: contexts\[0\]: ip: 10\.71\.0\.99 is outside/,
  ],
  [
    "a host port a hand-made context publishes",
    `${NET}contexts:\n  - { name: t3, level: l2, networks: [sa-net], publish: ["8080:81"] }\n`,
    /^error: contexts\[0\]: publish: host port 8080\/tcp is already published by context "solo"/,
  ],
  [
    "a host port two contexts of the file publish",
    `${NET}contexts:\n  - { name: t4, level: l2, networks: [sa-net], publish: ["9090:80"] }\n  - { name: t5, level: l2, networks: [sa-net], publish: ["9090:81"] }\n`,
    /^error: contexts\[1\]: publish: host port 9090\/tcp is already published by context "t4"/,
  ],
  [
    "an l2 context on a host network",
    `contexts:\n  - { name: t6, level: l2, networks: [hostn] }\n`,
    /^error: contexts\[0\]: level: network "hostn" \(driver host\) does not serve level l2/,
  ],
  [
    "more addresses than the declared network holds",
    "networks:\n  - { name: tiny, driver: bridge, subnets: [10.77.0.0/30] }\ncontexts:\n  - { name: u1, level: l2, networks: [tiny] }\n  - { name: u2, level: l2, networks: [tiny] }\n",
    /^error: contexts\[1\]: /,
  ],
  [
    "a network made by hand, declared with other options",
    "networks:\n  - { name: hand, driver: bridge, subnets: [10.71.0.0/24], nat: true }\n",
    /^error: networks\[0\]\.name: network "hand" exists, made by hand, with another nat: apply does not take over what it did not make; remove it \(netctx network rm hand\)/,
  ],
  [
    "a context made by hand, declared otherwise",
    `${NET}contexts:\n  - { name: solo, level: l2, networks: [sa-net] }\n`,
    /^error: contexts\[0\]\.name: context "solo" exists, made by hand, and differs from the file \(networks\)/,
  ],
  [
    "apply's own label set by the file",
    `${NET}contexts:\n  - { name: t7, level: l2, networks: [sa-net], labels: { netctx.scene: other } }\n`,
    /^error: contexts\[0\]\.labels: "netctx\.scene" is apply's own label/,
  ],
];

for (const [what, text, message] of refusedFiles) {
  test(`--dry-run refuses what apply refuses, with the same line and status: ${what}`, () => {
    const path = file(`${what.replace(/\W+/g, "-")}.yaml`, text);
    const was = dumps();
    const dry = netctx("apply", "--dry-run", path);
    refused(dry, was, `dry run of ${what}`);
    const real = netctx("apply", path);
    refused(real, was, `apply of ${what}`);
    assert.match(real.stderr, message);
    assert.equal(dry.stderr, real.stderr, "the same error");
    assert.equal(dry.code, real.code, "the same exit status");
    assert.equal(real.stdout, "", "nothing was started");
  });
}

const SCENE_A = `name: sa
networks:
  - { name: sa-net, driver: bridge, subnets: [10.72.0.0/24] }
contexts:
  - { name: a1, level: l2, networks: [sa-net], ips: [10.72.0.10] }
  - { name: a2, level: l2, networks: [sa-net] }
`;

test("--prune removes only what an earlier apply of the same scene made, and says so first", () => {
  netctxOk("apply", file("a.yaml", SCENE_A));
  // Scene B is named by its file's path.
  const b = file(
    "b.yaml",
    "networks:\n  - { name: sb-net, driver: routed, subnets: [10.78.0.0/24] }\ncontexts:\n  - { name: b1, level: l2, networks: [sb-net] }\n",
  );
  netctxOk("apply", b);

  // An empty scene owns nothing: its prune removes nothing (it used to remove every context and network).
  let was = dumps();
  assert.match(netctxOk("apply", "--prune", file("empty.yaml", "{}\n")), /^nothing to do/);
  assertUnchanged(was, "apply --prune of an empty scene");
  // The same file at another path is another scene.
  const bCopy = join(dir, "b-copy.yaml");
  copyFileSync(b, bCopy);
  const copy = netctxOk("apply", "--prune", bCopy);
  assert.match(copy, /^note: network sb-net exists, made by scene "[^"]*\/b\.yaml": used as it is/);
  assert.match(copy, /nothing to do/);
  assertUnchanged(was, "the same file under another name");

  const without = file(
    "a-without-a2.yaml",
    SCENE_A.replace("  - { name: a2, level: l2, networks: [sa-net] }\n", ""),
  );
  const dry = netctxOk("apply", "--dry-run", "--prune", without);
  assert.equal(dry, "remove context a2 (no longer in the file)\n");
  assertUnchanged(was, "--dry-run --prune");
  const out = netctxOk("apply", "--prune", without);
  assert.match(out, /^scene "sa" will remove: context a2\n\[1\/1\] remove context a2/);
  assert.deepEqual(names(), {
    contexts: ["a1", "b1", "solo"],
    networks: ["hand", "hostn", "sa-net", "sb-net"],
  });

  was = dumps();
  const gone = netctxOk("apply", "--prune", file("a-empty.yaml", "name: sa\n"));
  assert.match(gone, /^scene "sa" will remove: context a1, network sa-net\n/);
  assert.deepEqual(names(), { contexts: ["b1", "solo"], networks: ["hand", "hostn", "sb-net"] });
  netctxOk("apply", "--prune", file("b-empty.yaml", "name: other\n"));
  assert.deepEqual(names(), { contexts: ["b1", "solo"], networks: ["hand", "hostn", "sb-net"] });
  netctxOk("destroy", b);
});

test("an object made by hand that the file declares as it is stays hand-made: used, never pruned", () => {
  const path = file(
    "adopt.yaml",
    "name: adopt\nnetworks:\n  - { name: hand, driver: bridge, subnets: [10.71.0.0/24] }\ncontexts:\n  - { name: solo, level: l2, networks: [hand], ips: [10.71.0.10] }\n",
  );
  const was = dumps();
  const out = netctxOk("apply", path);
  assert.match(out, /note: network hand exists, made by hand: used as it is, never pruned by this scene/);
  assert.match(out, /note: context solo exists, made by hand: left as it is, never pruned by this scene/);
  assert.match(out, /nothing to do/);
  assertUnchanged(was, "apply of identical hand-made objects");
  netctxOk("apply", "--prune", file("adopt-empty.yaml", "name: adopt\n"));
  assertUnchanged(was, "prune of a scene that only declared hand-made objects");
});

test("a network whose options change is replaced with its scene's contexts, or the error says who holds it", () => {
  netctxOk("apply", file("c.yaml", SCENE_A.replace("name: sa", "name: sc")));
  const nat = file(
    "c-nat.yaml",
    SCENE_A.replace("name: sa", "name: sc").replace("10.72.0.0/24]", "10.72.0.0/24], nat: true"),
  );
  const dry = netctxOk("apply", "--dry-run", nat);
  assert.equal(
    dry,
    "remove context a1 (network sa-net is replaced)\nremove context a2 (network sa-net is replaced)\nreplace network sa-net (nat differs)\ncreate context a1\ncreate context a2\n",
  );
  netctxOk("apply", nat);
  const net = netctxJson<{ name: string; nat: boolean }[]>("network", "ls").find((n) => n.name === "sa-net");
  assert.equal(net?.nat, true);
  const a1 = netctxJson<{ name: string; status: string; addresses: string[] }[]>("ls").find(
    (c) => c.name === "a1",
  );
  assert.equal(a1?.status, "ready");
  assert.deepEqual(a1?.addresses, ["10.72.0.10/24"]);

  // A context made by hand on the network: no way round it but the one the error names.
  netctxOk("create", "intruder", "--level", "l2", "--network", "sa-net");
  const back = file("c-back.yaml", SCENE_A.replace("name: sa", "name: sc"));
  const was = dumps();
  const dryRefusal = netctx("apply", "--dry-run", back);
  refused(dryRefusal, was, "dry run of a change under a hand-made context");
  const r = netctx("apply", back);
  refused(r, was, "a change under a hand-made context");
  assert.equal(dryRefusal.stderr, r.stderr);
  assert.match(
    r.stderr,
    /^error: networks\[0\]\.nat: network "sa-net" exists with another nat and cannot be replaced while "intruder" \(made by hand\) uses it: remove it \(netctx rm intruder\) or move it to another network, then apply again\n$/,
  );
  netctxOk("rm", "intruder");
  netctxOk("apply", back);
  assert.equal(
    netctxJson<{ name: string; nat: boolean }[]>("network", "ls").find((n) => n.name === "sa-net")?.nat,
    false,
  );
  netctxOk("apply", "--prune", file("c-empty.yaml", "name: sc\n"));
});

test("a kernel failure half-way undoes the apply, removals too: the replaced context is back as it was", () => {
  const path = file("d.yaml", SCENE_A.replace("name: sa", "name: sd"));
  netctxOk("apply", path);
  const before = { export: netctxOk("state", "export"), state: netctxState() };
  const mac = netctxJson<{ interfaces: { mac: string }[] }>("inspect", "a1", "--json").interfaces[0]?.mac;
  // a1 is replaced (new address) first, then d3's host-side veth name is taken by somebody else's link.
  must(["ip", "link", "add", "nc-d3", "type", "veth", "peer", "name", "foreign-d3"]);
  const changed = file(
    "d-changed.yaml",
    `${SCENE_A.replace("name: sa", "name: sd").replace("10.72.0.10", "10.72.0.11")}  - { name: d3, level: l2, networks: [sa-net] }\n`,
  );
  const r = netctx("apply", changed);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^error: [^\n]+\n$/);
  assert.equal(netctxOk("state", "export"), before.export, "a1 is back with its address and MAC");
  const views = netctxJson<{ name: string; status: string }[]>("ls");
  assert.deepEqual(views.map((v) => `${v.name} ${v.status}`).sort(), ["a1 ready", "a2 ready", "solo ready"]);
  // Made again, a1 is a new record: only its creation time differs.
  const undated = (text: string) => text.replace(/"createdAt": "[^"]*"/g, "");
  assert.equal(undated(netctxState()), undated(before.state));
  assert.equal(
    netctxJson<{ interfaces: { mac: string }[] }>("inspect", "a1", "--json").interfaces[0]?.mac,
    mac,
  );
  must(["ip", "link", "del", "nc-d3"]);
  // Made again by the undo, a1 is still this scene's: its prune removes it.
  netctxOk("apply", "--prune", file("d-empty.yaml", "name: sd\n"));
  assert.deepEqual(names().contexts, ["solo"]);
});

test("an apply that would remove and then fail is refused before its first removal", () => {
  netctxOk("apply", file("e.yaml", SCENE_A.replace("name: sa", "name: se")));
  // a2 is pruned first, then t9 asks for solo's address: the rehearsal finds it before a2 goes.
  const path = file(
    "e-refused.yaml",
    `${SCENE_A.replace("name: sa", "name: se").replace("  - { name: a2, level: l2, networks: [sa-net] }\n", "")}  - { name: t9, level: l2, networks: [hand], ips: [10.71.0.10] }\n`,
  );
  const was = dumps();
  const dry = netctx("apply", "--dry-run", "--prune", path);
  refused(dry, was, "dry run");
  const real = netctx("apply", "--prune", path);
  refused(real, was, "apply");
  assert.equal(dry.stderr, real.stderr);
  assert.match(real.stderr, /^error: contexts\[1\]: ip: 10\.71\.0\.10 is already in use by "solo"/);
  netctxOk("apply", "--prune", file("e-empty.yaml", "name: se\n"));
});

test("destroy removes what its scene made and nothing else; a destroy that would strand a context changes nothing", () => {
  // Declares the hand-made network and context by name, and makes one network and one context of its own.
  const path = file(
    "d.yaml",
    "name: sd\nnetworks:\n  - { name: hand, driver: bridge, subnets: [10.71.0.0/24] }\n  - { name: sd-net, driver: bridge, subnets: [10.76.0.0/24] }\ncontexts:\n  - { name: solo, level: l2, networks: [hand], ips: [10.71.0.10] }\n  - { name: d1, level: l2, networks: [sd-net] }\n",
  );
  const start = names();
  netctxOk("apply", path);
  // A context made by hand on the scene's network: destroying the scene would pull the network from under it.
  netctxOk("create", "dh", "--level", "l2", "--network", "sd-net");
  let was = dumps();
  const dry = netctx("destroy", "--dry-run", path);
  refused(dry, was, "destroy --dry-run while dh uses sd-net");
  const real = netctx("destroy", path);
  refused(real, was, "destroy while dh uses sd-net");
  assert.equal(dry.stderr, real.stderr);
  assert.match(real.stderr, /network "sd-net" .*"dh"/);

  netctxOk("rm", "dh");
  was = dumps();
  const plan = netctxOk("destroy", "--dry-run", path);
  assert.match(plan, /note: network hand exists, made by hand: left as it is/);
  assert.match(plan, /note: context solo exists, made by hand: left as it is/);
  assert.match(plan, /remove context d1 \(the scene is destroyed\)\nremove network sd-net/);
  assertUnchanged(was, "destroy --dry-run");
  const out = netctxOk("destroy", path);
  assert.match(out, /removed context d1\nremoved network sd-net\n$/);
  assert.deepEqual(names(), start, "the hand-made network and context stay");
  assert.match(netctxOk("destroy", path), /nothing to do: scene "sd" has made nothing here/);
});
