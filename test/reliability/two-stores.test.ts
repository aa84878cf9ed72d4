/**
 * Two stores on one host (issue 17): a seeded sequence of operations against both (network create/rm, create, rm
 * with and without --force while a process runs inside, gc, repair, apply --prune of each store's scene) ends with
 * every context of both stores working, both stores converged, and no object of one store ever changed by an
 * operation of the other. NETCTX_TWO_STORES_SEED and NETCTX_TWO_STORES_OPS tune it.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { stringify as yamlStringify } from "yaml";
import { NETCTX, netctx, netctxJson, netctxOk } from "../utils/cli.ts";
import { type Json, links } from "../utils/kernel-oracle.ts";
import { ping } from "../utils/ping.ts";
import { mulberry32 } from "./prng.ts";

const SEED = Number(process.env.NETCTX_TWO_STORES_SEED ?? 11);
const OPS = Number(process.env.NETCTX_TWO_STORES_OPS ?? 60);
const CG = process.env.NETCTX_CGROUP_PARENT!;

interface Store {
  label: string;
  args: string[];
  /** The second octet's range its subnets come from: the stores never overlap. */
  octet: number;
  id: string;
  nets: Map<string, "bridge" | "host">;
  contexts: Map<string, { level: string; network: string }>;
  scene: string;
}

const tmp = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH!, "two-"));
const other = join(tmp, "state-b");
const stores: Store[] = [
  {
    label: "a",
    args: [],
    octet: 140,
    id: "",
    nets: new Map(),
    contexts: new Map(),
    scene: join(tmp, "a.yaml"),
  },
  {
    label: "b",
    args: ["--state-dir", other],
    octet: 150,
    id: "",
    nets: new Map(),
    contexts: new Map(),
    scene: join(tmp, "b.yaml"),
  },
];
const running: ChildProcess[] = [];

after(() => {
  for (const p of running) if (p.exitCode === null && p.pid) process.kill(p.pid, "SIGKILL");
});

const run = (s: Store, ...args: string[]) => netctx(...s.args, ...args);
const ok = (s: Store, ...args: string[]) => netctxOk(...s.args, ...args);

/**
 * Everything on the host that carries store `s`'s id: its links with their addresses, netns, cgroups, nft tables. A
 * handful of processes per snapshot (one per kind), since it is taken twice per step.
 */
function objectsOf(s: Store): string {
  const out = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: "utf8" }).stdout;
  const mine = links().filter((l) => (l as { ifalias?: string }).ifalias?.includes(s.id));
  const names = new Set(mine.map((l) => l.ifname));
  // Addresses only: a new bridge's carrier and operstate change on the kernel's schedule, not by anyone's operation.
  const addrs = (JSON.parse(out("ip", ["-j", "addr", "show"])) as { ifname: string; addr_info: Json[] }[])
    .filter((a) => names.has(a.ifname))
    .map((a) => [a.ifname, a.addr_info.map((i) => `${i["local"]}/${i["prefixlen"]}`)]);
  // Each context netns's loopback, one line per netns: "NAME ALIAS".
  const ns = out("sh", [
    "-c",
    'for n in $(ls /run/netns | grep "^netctx-"); do echo "$n $(ip -n "$n" -j link show lo)"; done',
  ])
    .split("\n")
    .filter((line) => line.includes(s.id))
    .map((line) => line.split(" ")[0]);
  // The cgroup parent appears with the first context that needs one.
  const cgroups = existsSync(CG)
    ? out("python3", [
        "-c",
        `import os,sys
for c in sorted(os.listdir(sys.argv[1])):
    p = os.path.join(sys.argv[1], c)
    try:
        if os.path.isdir(p) and os.getxattr(p, "user.netctx.store").decode() == sys.argv[2]: print(c)
    except OSError: pass`,
        CG,
        s.id,
      ])
        .split("\n")
        .filter(Boolean)
    : [];
  const tables = out("nft", ["list", "tables"])
    .split("\n")
    .filter((t) => /netctx/.test(t))
    .map((t) => t.replace(/^table /, "").split(" "))
    .filter(([family, name]) => out("nft", ["-t", "list", "table", family!, name!]).includes(s.id))
    .map(([family, name]) => out("nft", ["-j", "list", "table", family!, name!]));
  return JSON.stringify({ links: mine.map((l) => [l.ifname, l.master, l.mtu]), addrs, ns, cgroups, tables });
}

function works(s: Store, name: string): void {
  const c = s.contexts.get(name)!;
  const view = netctxJson<{
    status: string;
    addresses: string[];
    netns?: string;
    interfaces: { gateways: string[] }[];
  }>(...s.args, "inspect", name);
  assert.equal(view.status, "ready", `${s.label}/${name}`);
  if (c.level === "l2") {
    const gw = view.interfaces[0]!.gateways.find((g) => !g.includes(":"))!;
    assert.ok(ping(view.netns!, gw, { tries: 3 }), `${s.label}/${name} reaches its gateway`);
  } else {
    const addr = view.addresses.find((a) => !a.includes(":"))!.split("/")[0]!;
    ok(s, "exec", name, "--", "python3", "-c", `import socket; socket.socket().bind(("${addr}", 0))`);
  }
}

test("a seeded sequence of operations on two stores never touches one store's objects from the other", () => {
  const rand = mulberry32(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  for (const s of stores) {
    ok(s, "network", "create", `${s.label}hn`, "--driver", "host", "--subnet", `10.${s.octet}.0.0/24`);
    s.nets.set(`${s.label}hn`, "host");
    s.id = spawnSync("cat", [join(s.args[1] ?? process.env.NETCTX_STATE_DIR!, "store-id")], {
      encoding: "utf8",
    }).stdout.trim();
  }
  let serial = 0;
  const log: string[] = [];
  for (let i = 0; i < OPS; i++) {
    const s = pick(stores);
    const peer = stores.find((x) => x !== s)!;
    const before = objectsOf(peer);
    const op = pick([
      "net",
      "net-rm",
      "ctx",
      "ctx",
      "ctx",
      "rm",
      "rm",
      "busy",
      "gc",
      "repair",
      "apply",
    ] as const);
    const n = ++serial;
    log.push(`${s.label} ${op}`);
    if (op === "net") {
      const name = `${s.label}n${n}`;
      ok(
        s,
        "network",
        "create",
        name,
        "--driver",
        "bridge",
        "--subnet",
        `10.${s.octet + 1 + (n % 8)}.${n % 250}.0/24`,
      );
      s.nets.set(name, "bridge");
    } else if (op === "net-rm") {
      const unused = [...s.nets.keys()].filter(
        (net) => ![...s.contexts.values()].some((c) => c.network === net),
      );
      const name = unused.length ? pick(unused) : undefined;
      if (name && name !== `${s.label}hn`) {
        ok(s, "network", "rm", name);
        s.nets.delete(name);
      }
    } else if (op === "ctx") {
      const [network, driver] = pick([...s.nets]);
      const level = driver === "host" ? pick(["socket", "l3"]) : "l2";
      const name = `${s.label}c${n}`;
      ok(s, "create", name, "--level", level, "--network", network);
      s.contexts.set(name, { level, network });
    } else if (op === "busy" && s.contexts.size) {
      // A process inside: rm refuses until --force.
      const name = pick([...s.contexts.keys()]);
      const child = spawn(NETCTX, [...s.args, "exec", name, "--", "sleep", "600"], { stdio: "ignore" });
      running.push(child);
      spawnSync("sleep", ["0.3"]);
      const refused = run(s, "rm", name);
      assert.notEqual(refused.code, 0, `${s.label}: rm ${name} with a process inside is refused`);
      works(s, name);
    } else if (op === "rm" && s.contexts.size) {
      const name = pick([...s.contexts.keys()]);
      ok(s, "rm", "--force", name);
      s.contexts.delete(name);
    } else if (op === "gc" || op === "repair") {
      ok(s, op);
    } else if (op === "apply") {
      // The store's scene: one context of its own on its host network; --prune removes only what the scene made.
      writeFileSync(
        s.scene,
        yamlStringify({
          name: `scene-${s.label}`,
          contexts: [{ name: `${s.label}scene`, level: "socket", networks: [`${s.label}hn`] }],
        }),
      );
      ok(s, "apply", "--prune", s.scene);
      s.contexts.set(`${s.label}scene`, { level: "socket", network: `${s.label}hn` });
    }
    assert.equal(objectsOf(peer), before, `step ${i} (${log.at(-1)}) changed store ${peer.label}'s objects`);
  }
  for (const s of stores) {
    assert.deepEqual(
      netctxJson<{ actions: unknown[] }>(...s.args, "gc", "--dry-run", "--json").actions,
      [],
      `${s.label} converged after: ${log.join(", ")}`,
    );
    for (const name of s.contexts.keys()) works(s, name);
  }
});
