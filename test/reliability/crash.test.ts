/**
 * Crash campaign: netctx processes (create, rm, network create, network rm) are killed with SIGKILL at named
 * pause points inside kernel work and at random instants, several at once; then `netctx gc` runs and the store and
 * the kernel must agree exactly (oracle.ts): no leaked netns, link, address, rule, route, nft element, cgroup or
 * BPF program, no lost or duplicate lease. Every surviving context must still work on the wire.
 * Seeded (NETCTX_CRASH_SEED); NETCTX_CRASH_KILLS sets the number of kills (default 200).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { test } from "node:test";
import { PAUSE_ENV, PAUSE_MARK } from "../../src/engine/pause.ts";
import { specOf } from "../../src/levels/driver.ts";
import { NETCTX, netctx, netctxOk } from "../helpers/cli.ts";
import { eventually, ping } from "../helpers/kernel.ts";
import { disagreements, openStore } from "./oracle.ts";
import { mulberry32 } from "./prng.ts";

const SEED = Number(process.env.NETCTX_CRASH_SEED ?? 7);
const KILLS = Number(process.env.NETCTX_CRASH_KILLS ?? 200);
const PER_ROUND = 4;
const CGROUP_PARENT = process.env.NETCTX_CGROUP_PARENT;

interface Outcome {
  killed: boolean;
  code: number | null;
  stderr: string;
}

/** Run netctx and SIGKILL it at a pause point (when it gets there) or after a delay (when still running). */
function runAndKill(args: string[], kill: { pauseAt: string } | { afterMs: number }): Promise<Outcome> {
  return new Promise((resolve) => {
    const env = { ...process.env };
    if ("pauseAt" in kill) env[PAUSE_ENV] = kill.pauseAt;
    const child = spawn(NETCTX, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
      if ("pauseAt" in kill && stderr.includes(`${PAUSE_MARK}${kill.pauseAt}`)) child.kill("SIGKILL");
    });
    const timer =
      "afterMs" in kill
        ? setTimeout(() => {
            if (child.exitCode === null) child.kill("SIGKILL");
          }, kill.afterMs)
        : undefined;
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ killed: signal === "SIGKILL", code, stderr });
    });
  });
}

const CREATE_L2 = [
  "create:after-record",
  "create:after-netns",
  "create:after-veth",
  "create:after-addresses",
  "create:after-attach",
  "create:before-ready",
];
const CREATE_ROUTED = [...CREATE_L2, "create:after-nft", "create:after-routes"];
const CREATE_SHARED = [
  "create:after-record",
  "create:after-cgroup",
  "create:after-addresses",
  "create:after-rules",
  "create:before-ready",
];
const RM = ["rm:after-mark", "rm:after-nft", "rm:after-bpf", "rm:after-teardown"];
const NET_CREATE = [
  "network-create:after-record",
  "network-create:after-link",
  "network-create:after-addresses",
  "network-create:before-ready",
];
const NET_RM = ["network-rm:after-mark", "network-rm:after-nft", "network-rm:after-destroy"];

interface Op {
  args: string[];
  points: string[];
}

test(`crash campaign: ${KILLS} SIGKILLs across create, rm, network create/rm, then gc converges`, async () => {
  const started = Date.now();
  const rand = mulberry32(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  netctxOk(
    "network",
    "create",
    "cb",
    "--driver",
    "bridge",
    "--subnet",
    "10.90.0.0/24",
    "--subnet",
    "fd90::/64",
    "--nat",
  );
  netctxOk("network", "create", "cr", "--driver", "routed", "--subnet", "10.91.0.0/24");
  netctxOk("network", "create", "ch", "--driver", "host", "--subnet", "10.92.0.0/24");
  const base = new Set(["cb", "cr", "ch"]);
  netctxOk("create", "keep1", "--level", "l2", "--network", "cb");
  netctxOk("create", "keep2", "--level", "l2", "--network", "cb", "--network", "cr");

  // Random kills land anywhere from node's start-up to the end of the operation.
  const t0 = Date.now();
  netctxOk("create", "probe", "--level", "l2", "--network", "cb");
  const opMs = Date.now() - t0;
  netctxOk("rm", "probe");

  const store = openStore();
  let kills = 0;
  let pauseKills = 0;
  let completed = 0;
  let seq = 0;
  let round = 0;
  const gcActions = new Map<string, number>();
  try {
    while (kills < KILLS && round < 3 * KILLS) {
      round++;
      const contexts = store
        .listContexts()
        .map((c) => c.name)
        .filter((n) => !n.startsWith("keep"));
      const extraNets = store
        .listNetworks()
        .map((n) => n.name)
        .filter((n) => !base.has(n));
      const targets = new Set<string>();
      const ops: Op[] = [];
      for (let i = 0; i < PER_ROUND; i++) {
        const name = `k${++seq}`;
        const r = rand();
        const rmTarget =
          contexts.find((c) => !targets.has(c) && rand() < 0.5) ?? contexts.find((c) => !targets.has(c));
        if ((r < 0.3 || contexts.length > 12) && rmTarget) {
          targets.add(rmTarget);
          ops.push({ args: ["rm", rmTarget], points: RM });
        } else if (r < 0.5)
          ops.push({ args: ["create", name, "--level", "l2", "--network", "cb"], points: CREATE_L2 });
        else if (r < 0.6)
          ops.push({ args: ["create", name, "--level", "l2", "--network", "cr"], points: CREATE_ROUTED });
        else if (r < 0.67)
          ops.push({
            args: ["create", name, "--level", "l2", "--network", "cb", "--network", "cr"],
            points: CREATE_ROUTED,
          });
        else if (r < 0.74)
          ops.push({ args: ["create", name, "--level", "socket", "--network", "ch"], points: CREATE_SHARED });
        else if (r < 0.81)
          ops.push({ args: ["create", name, "--level", "l3", "--network", "ch"], points: CREATE_SHARED });
        else if (r < 0.9 || extraNets.length === 0) {
          const driver = pick(["bridge", "routed"]);
          ops.push({
            args: [
              "network",
              "create",
              `n${seq}`,
              "--driver",
              driver,
              "--subnet",
              `10.${200 + (seq >> 8)}.${seq & 255}.0/24`,
            ],
            points: NET_CREATE,
          });
        } else {
          const net = extraNets.find((n) => !targets.has(n));
          if (!net) continue;
          targets.add(net);
          ops.push({ args: ["network", "rm", net], points: NET_RM });
        }
      }
      const tRound = Date.now();
      const outcomes = await Promise.all(
        ops.map((op) =>
          rand() < 0.5
            ? runAndKill(op.args, { pauseAt: pick(op.points) }).then((o) => ({ ...o, pause: true }))
            : runAndKill(op.args, { afterMs: Math.floor(opMs * (0.5 + 2 * rand())) }).then((o) => ({
                ...o,
                pause: false,
              })),
        ),
      );
      for (const o of outcomes) {
        if (o.killed) {
          kills++;
          if (o.pause) pauseKills++;
        } else {
          completed++;
          assert.equal(o.code, 0, `an operation that was not killed failed: ${o.stderr}`);
        }
      }
      const tGc = Date.now();
      const gc = netctx("gc", "--json");
      const tCheck = Date.now();
      assert.equal(gc.code, 0, `gc failed: ${gc.stderr}${gc.stdout}`);
      for (const a of (JSON.parse(gc.stdout) as { actions: { action: string }[] }).actions)
        gcActions.set(a.action, (gcActions.get(a.action) ?? 0) + 1);
      // Deleting a netns frees its veths asynchronously in the kernel: allow a moment.
      const problems = eventually(() => disagreements(store, CGROUP_PARENT), [], 3000);
      assert.deepEqual(
        problems,
        [],
        `round ${round} (seed ${SEED}): ${ops.map((o) => o.args.join(" ")).join("; ")}`,
      );
      if (process.env.NETCTX_CRASH_DEBUG)
        console.log(
          `round ${round}: ops ${tGc - tRound} ms, gc ${tCheck - tGc} ms, check ${Date.now() - tCheck} ms`,
          outcomes.map((o) => o.killed),
        );
      if (round % 5 === 0) assertWire(store);
    }
    assertWire(store);
    const again = JSON.parse(netctxOk("gc", "--dry-run", "--json")) as { actions: unknown[] };
    assert.deepEqual(again.actions, [], "a converged host needs no gc");
  } finally {
    store.close();
  }
  assert.ok(kills >= KILLS, `only ${kills} kills`);
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(
    `crash campaign: seed ${SEED}, ${round} rounds, ${kills} kills (${pauseKills} at pause points), ${completed} completed, gc actions ${JSON.stringify(Object.fromEntries(gcActions))}, ${secs} s`,
  );
});

/** Every surviving l2 context reaches its gateways; the first two bridge contexts reach each other. */
function assertWire(store: ReturnType<typeof openStore>): void {
  const onBridge: { netns: string; ip: string }[] = [];
  for (const c of store.listContexts()) {
    if (c.level !== "l2") continue;
    const spec = specOf(c);
    for (const a of spec.attachments)
      for (const g of a.gateways.filter((x) => !x.includes(":")))
        assert.ok(
          pingRetry(spec.netns!, g),
          `context ${c.name} cannot reach its gateway ${g} on ${a.network}${diagnose(spec.netns!)}`,
        );
    const cb = spec.attachments.find((a) => a.network === "cb");
    if (cb) onBridge.push({ netns: spec.netns!, ip: cb.addresses[0]!.split("/")[0]! });
  }
  if (onBridge.length >= 2) assert.ok(pingRetry(onBridge[0]!.netns, onBridge[onBridge.length - 1]!.ip));
}

function diagnose(netns: string): string {
  const run = (argv: string[]) => spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" }).stdout;
  return [
    "",
    run(["ip", "-d", "link"]),
    run(["ip", "addr"]),
    run(["ip", "neigh"]),
    run(["nsenter", `--net=${netns}`, "ip", "-d", "addr"]),
    run(["nsenter", `--net=${netns}`, "ip", "route"]),
    run(["nsenter", `--net=${netns}`, "ip", "neigh"]),
    run(["nft", "list", "ruleset"]),
    run(["bridge", "fdb"]),
  ].join("\n----\n");
}

function pingRetry(netns: string, ip: string): boolean {
  for (let i = 0; i < 3; i++) if (ping(netns, ip)) return true;
  return false;
}
