/**
 * Crash campaign: netctx processes (create, rm, network create, network rm) are killed with SIGKILL at named
 * pause points inside kernel work and at random instants, several at once; then `netctx gc` runs and the store and
 * the kernel must agree exactly (oracle.ts): no leaked netns, link, address, rule, route, nft element, cgroup or
 * BPF program, no lost or duplicate lease. Every surviving context must still work on the wire.
 * The CNI plugin (installed launcher, a sh script that execs node) is crashed the same way inside ADD and DEL; the
 * runtime then retries DEL as libcni does after a failed ADD, and gc must never touch the runtime's netns.
 * Seeded (NETCTX_CRASH_SEED); NETCTX_CRASH_KILLS and NETCTX_CRASH_CNI_KILLS set the kills (default 120 + 90).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { test } from "node:test";
import { contextNameFor } from "../../src/cni/verbs.ts";
import { specOf } from "../../src/levels/driver.ts";
import { PAUSE_ENV, PAUSE_MARK } from "../../src/pause.ts";
import { NETCTX, netctx, netctxJson, netctxOk } from "../utils/cli.ts";
import { type CniResult, cniEnv, installedPlugin } from "../utils/cni-runtime.ts";
import { ipLinkNames } from "../utils/kernel-oracle.ts";
import { addNetns, contextNetns, delNetns, inNetns, netnsPath } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";
import { disagreements, openStore } from "../utils/state-oracle.ts";
import { eventually } from "../utils/wait.ts";
import { mulberry32 } from "./prng.ts";

const SEED = Number(process.env.NETCTX_CRASH_SEED ?? 7);
// The CNI campaign below adds its own kills; together they stay above 200.
const KILLS = Number(process.env.NETCTX_CRASH_KILLS ?? 120);
const CNI_KILLS = Number(process.env.NETCTX_CRASH_CNI_KILLS ?? 90);
const PER_ROUND = 4;
const CGROUP_PARENT = process.env.NETCTX_CGROUP_PARENT;

interface Outcome {
  killed: boolean;
  code: number | null;
  stderr: string;
}

/**
 * Run netctx and SIGKILL it at a pause point (when it gets there) or after a delay (when still running);
 * without a kill it runs to the end.
 */
function runAndKill(
  args: string[],
  kill: { pauseAt: string } | { afterMs: number } | undefined,
): Promise<Outcome> {
  return new Promise((resolve) => {
    const env = { ...process.env };
    if (kill && "pauseAt" in kill) env[PAUSE_ENV] = kill.pauseAt;
    const child = spawn(NETCTX, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
      if (kill && "pauseAt" in kill && stderr.includes(`${PAUSE_MARK}${kill.pauseAt}`)) child.kill("SIGKILL");
    });
    const timer =
      kill && "afterMs" in kill
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
  const perOp = new Map<string, number>();
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
      // Removals are quick and need something to remove: they are killed at a pause point more often (a timed kill
      // mostly lands after they finished), and a fifth of the creates run undisturbed so contexts accumulate.
      const outcomes = await Promise.all(
        ops.map((op) => {
          const removal = op.args.includes("rm");
          const r = rand();
          if (!removal && r < 0.2)
            return runAndKill(op.args, undefined).then((o) => ({ ...o, pause: false }));
          return r < (removal ? 0.85 : 0.6)
            ? runAndKill(op.args, { pauseAt: pick(op.points) }).then((o) => ({ ...o, pause: true }))
            : runAndKill(op.args, { afterMs: Math.floor(opMs * (0.5 + 2 * rand())) }).then((o) => ({
                ...o,
                pause: false,
              }));
        }),
      );
      for (const [i, o] of outcomes.entries()) {
        if (o.killed) {
          kills++;
          const args = ops[i]!.args;
          const label = args[0] === "network" ? `network ${args[1]}` : args[0]!;
          perOp.set(label, (perOp.get(label) ?? 0) + 1);
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
    `crash campaign: seed ${SEED}, ${round} rounds, ${kills} kills (${pauseKills} at pause points; ${JSON.stringify(Object.fromEntries(perOp))}), ${completed} completed, gc actions ${JSON.stringify(Object.fromEntries(gcActions))}, ${secs} s`,
  );
});

// ---------------------------------------------------------------------------------------------------------
// CNI ADD and DEL

interface Container {
  id: string;
  /** `ip netns add` name: the runtime's netns, never ours to delete. */
  netns: string;
  conf: Record<string, unknown>;
  /** The address ADD returned, once it succeeded. */
  ip?: string;
}

/**
 * Exec the installed plugin as a runtime does (CNI_* env, config on stdin) and SIGKILL it at a pause point or after a
 * delay. The launcher is sh running node in a pipeline, so node is a grandchild: the whole process group is killed.
 */
function cniAndKill(
  command: "ADD" | "DEL",
  c: Container,
  kill: { pauseAt: string } | { afterMs: number } | undefined,
): Promise<Outcome & { stdout: string }> {
  return new Promise((resolve) => {
    const env = cniEnv({
      CNI_COMMAND: command,
      CNI_CONTAINERID: c.id,
      CNI_NETNS: netnsPath(c.netns),
      CNI_IFNAME: "eth0",
    });
    if (kill && "pauseAt" in kill) env[PAUSE_ENV] = kill.pauseAt;
    const child = spawn(installedPlugin(), [], { env, stdio: ["pipe", "pipe", "pipe"], detached: true });
    const killGroup = () => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    };
    child.stdin.on("error", () => {
      // killed before it read its config
    });
    child.stdin.end(JSON.stringify(c.conf));
    let stdout = "";
    let stderr = "";
    let killed = false;
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
      if (kill && "pauseAt" in kill && stderr.includes(`${PAUSE_MARK}${kill.pauseAt}`)) {
        killed = true;
        killGroup();
      }
    });
    const timer =
      kill && "afterMs" in kill
        ? setTimeout(() => {
            if (child.exitCode === null) {
              killed = true;
              killGroup();
            }
          }, kill.afterMs)
        : undefined;
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ killed: killed || signal === "SIGKILL", code, stderr, stdout });
    });
  });
}

const CNI_DEL = ["rm:after-mark", "rm:after-nft", "rm:after-teardown"];

function runtimeNetns(): string[] {
  return existsSync("/run/netns") ? readdirSync("/run/netns").filter((n) => n.startsWith("crt")) : [];
}

const linksIn = (netns: string) => (existsSync(netnsPath(netns)) ? ipLinkNames(netnsPath(netns)).sort() : []);

/** What the runtime's side must look like: its netns all there (gc never deletes one), each with lo + eth0. */
function runtimeProblems(store: ReturnType<typeof openStore>, live: Container[]): string[] {
  const problems: string[] = [];
  const have = runtimeNetns().sort();
  const want = live.map((c) => c.netns).sort();
  if (JSON.stringify(have) !== JSON.stringify(want))
    problems.push(`runtime netns: want [${want.join(" ")}] have [${have.join(" ")}]`);
  for (const c of live) {
    const links = linksIn(c.netns);
    if (JSON.stringify(links) !== JSON.stringify(["eth0", "lo"]))
      problems.push(`container ${c.id}: links [${links.join(" ")}]`);
    const record = store.getContext(contextNameFor(c.id, "eth0"));
    if (!record) {
      problems.push(`container ${c.id}: its context is lost`);
      continue;
    }
    const held = store
      .leases()
      .filter((l) => l.owner === record.name)
      .map((l) => l.address);
    if (JSON.stringify(held) !== JSON.stringify([c.ip]))
      problems.push(`container ${c.id}: ADD returned ${c.ip}, leases [${held.join(" ")}]`);
  }
  return problems;
}

test(`CNI crash campaign: ${CNI_KILLS} SIGKILLs inside ADD and DEL, then DEL retries and gc converge`, async () => {
  const started = Date.now();
  const rand = mulberry32(SEED + 100);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const bridged = { cniVersion: "1.0.0", name: "cnb", type: "netctx", subnets: ["10.94.0.0/24"], nat: true };
  const routed = {
    cniVersion: "1.0.0",
    name: "cnr",
    type: "netctx",
    driver: "routed",
    subnets: ["10.95.0.0/24"],
  };
  let seq = 0;
  const fresh = (conf: Record<string, unknown>): Container => {
    const c = { id: `ctr${++seq}`, netns: `crt${seq}`, conf };
    addNetns(c.netns);
    return c;
  };
  const live: Container[] = [];
  const addOk = async (c: Container) => {
    const r = await cniAndKill("ADD", c, undefined);
    assert.equal(r.code, 0, `ADD ${c.id}: ${r.stdout}${r.stderr}`);
    c.ip = (JSON.parse(r.stdout) as CniResult).ips[0]!.address.split("/")[0]!;
  };
  // The first ADDs make the networks (from the configs' subnets) and give the random kills their time scale.
  for (const conf of [bridged, routed]) {
    const c = fresh(conf);
    await addOk(c);
    live.push(c);
  }
  const probe = fresh(bridged);
  const t0 = Date.now();
  await addOk(probe);
  const opMs = Date.now() - t0;
  assert.equal((await cniAndKill("DEL", probe, undefined)).code, 0);
  delNetns(probe.netns);

  const store = openStore();
  const kills = new Map<string, number>();
  let total = 0;
  let completed = 0;
  let lost = 0;
  let round = 0;
  const gcActions = new Map<string, number>();
  try {
    while (total < CNI_KILLS && round < 3 * CNI_KILLS) {
      round++;
      const ops: { command: "ADD" | "DEL"; c: Container; points: string[] }[] = [];
      const busy = new Set<Container>();
      for (let i = 0; i < PER_ROUND; i++) {
        const removable = live.filter((c) => !busy.has(c) && c !== live[0] && c !== live[1]);
        if (removable.length > 0 && (rand() < 0.6 || removable.length > 10)) {
          const c = pick(removable);
          busy.add(c);
          ops.push({ command: "DEL", c, points: CNI_DEL });
        } else {
          const conf = rand() < 0.7 ? bridged : routed;
          ops.push({ command: "ADD", c: fresh(conf), points: conf === routed ? CREATE_ROUTED : CREATE_L2 });
        }
      }
      // A fifth of the operations run undisturbed, so containers accumulate for DEL to crash in.
      const plans = ops.map((op) => {
        const r = rand();
        if (r < 0.2) return undefined;
        return r < 0.6 ? { pauseAt: pick(op.points) } : { afterMs: Math.floor(opMs * (0.3 + 2 * rand())) };
      });
      const outcomes = await Promise.all(ops.map((op, i) => cniAndKill(op.command, op.c, plans[i])));
      // The runtime's view: a failed ADD or DEL is followed by DEL (libcni's cleanup), then the netns goes.
      const retry: Container[] = [];
      for (const [i, o] of outcomes.entries()) {
        const { command, c } = ops[i]!;
        if (o.killed) {
          total++;
          const how = plans[i] && "pauseAt" in plans[i] ? "pause" : "random";
          kills.set(`${command} ${how}`, (kills.get(`${command} ${how}`) ?? 0) + 1);
          retry.push(c);
          continue;
        }
        completed++;
        assert.equal(o.code, 0, `CNI ${command} ${c.id} was not killed and failed: ${o.stdout}${o.stderr}`);
        if (command === "ADD") {
          c.ip = (JSON.parse(o.stdout) as CniResult).ips[0]!.address.split("/")[0]!;
          live.push(c);
        } else retry.push(c);
      }
      // Containers are torn down independently of each other: their DELs run at once.
      const retryDel = async () => {
        const results = await Promise.all(retry.map((c) => cniAndKill("DEL", c, undefined)));
        for (const [i, r] of results.entries()) {
          const c = retry[i]!;
          assert.equal(r.code, 0, `DEL retry ${c.id}: ${r.stdout}${r.stderr}`);
          delNetns(c.netns);
          const at = live.indexOf(c);
          if (at >= 0) live.splice(at, 1);
        }
      };
      const runGc = () => {
        const gc = netctx("gc", "--json");
        assert.equal(gc.code, 0, `gc failed: ${gc.stderr}${gc.stdout}`);
        for (const a of (JSON.parse(gc.stdout) as { actions: { action: string }[] }).actions)
          gcActions.set(a.action, (gcActions.get(a.action) ?? 0) + 1);
      };
      // gc may run before the runtime gets round to its DEL, or after it.
      if (rand() < 0.5) {
        runGc();
        await retryDel();
      } else {
        await retryDel();
        runGc();
      }
      // Now and then a runtime loses a container without DEL: gc must drop its context once the netns is gone.
      if (rand() < 0.1 && live.length > 2) {
        const c = live.splice(2 + Math.floor(rand() * (live.length - 2)), 1)[0]!;
        delNetns(c.netns);
        lost++;
        runGc();
      }
      const problems = eventually(
        () => [...disagreements(store, CGROUP_PARENT), ...runtimeProblems(store, live)],
        [],
        3000,
      );
      assert.deepEqual(
        problems,
        [],
        `CNI round ${round} (seed ${SEED}): ${ops.map((o) => `${o.command} ${o.c.id}`).join("; ")}`,
      );
      if (round % 5 === 0) assertWire(store);
    }
    assertWire(store);
    const again = JSON.parse(netctxOk("gc", "--dry-run", "--json")) as { actions: unknown[] };
    assert.deepEqual(again.actions, [], "a converged host needs no gc");
  } finally {
    store.close();
  }
  assert.ok(total >= CNI_KILLS, `only ${total} kills`);
  console.log(
    `CNI crash campaign: seed ${SEED}, ${round} rounds, ${total} kills ${JSON.stringify(Object.fromEntries(kills))}, ${completed} completed, ${lost} containers lost without DEL, gc actions ${JSON.stringify(Object.fromEntries(gcActions))}, ${((Date.now() - started) / 1000).toFixed(1)} s`,
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
    run(inNetns(netns, ["ip", "-d", "addr"])),
    run(inNetns(netns, ["ip", "route"])),
    run(inNetns(netns, ["ip", "neigh"])),
    run(["nft", "list", "ruleset"]),
    run(["bridge", "fdb"]),
  ].join("\n----\n");
}

const pingRetry = (netns: string, ip: string) => ping(netns, ip, { tries: 3 });

// ---------------------------------------------------------------------------------------------------------
// network connect and disconnect (issue 17)

/** Start netctx with a pause point; resolves once it stopped there (SIGSTOP), with the child and its end. */
function runToPause(
  args: string[],
  pauseAt: string,
): Promise<{ child: ChildProcess; end: Promise<Outcome> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(NETCTX, args, {
      env: { ...process.env, [PAUSE_ENV]: pauseAt },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    const end = new Promise<Outcome>((done) =>
      child.on("close", (code, signal) => done({ killed: signal === "SIGKILL", code, stderr })),
    );
    child.stderr.on("data", (d) => {
      stderr += d;
      if (stderr.includes(`${PAUSE_MARK}${pauseAt}`)) resolve({ child, end });
    });
    void end.then((o) => reject(new Error(`netctx ${args.join(" ")} ended before ${pauseAt}: ${o.stderr}`)));
  });
}

interface ConnectView {
  status: string;
  networks: string[];
  interfaces: { network: string; hostIfname?: string }[];
}
interface GcJson {
  actions: { action: string; object: string }[];
  busy: string[];
}
const leasesOf = (net: string, owner: string) =>
  netctxJson<{ leases: { owner: string }[] }>("network", "inspect", net).leases.filter(
    (l) => l.owner === owner,
  );

/** cx is back on its first network only, working, with nothing of the connect left anywhere. */
function connectUndone(store: ReturnType<typeof openStore>, net: string, label: string): void {
  assert.deepEqual(netctxJson<GcJson>("gc", "--dry-run").actions, [], `${label}: gc has nothing more to do`);
  const view = netctxJson<ConnectView>("inspect", "cx");
  assert.equal(view.status, "ready", label);
  assert.deepEqual(view.networks, ["kc1"], label);
  assert.ok(ping(contextNetns("cx"), "10.85.0.1", { tries: 3 }), `${label}: cx reaches its first gateway`);
  assert.deepEqual(leasesOf(net, "cx"), [], `${label}: the connect's lease is free`);
  assert.deepEqual(
    ipLinkNames().filter((n) => n.startsWith("nc-cx.")),
    [],
    `${label}: no half-made link is left`,
  );
  assert.deepEqual(
    eventually(() => disagreements(store, CGROUP_PARENT), [], 3000),
    [],
    label,
  );
}

const CONNECT_POINTS = [
  "connect:after-record",
  "create:after-veth",
  "create:after-addresses",
  "connect:after-attach",
  "connect:after-extras",
];

test("a network connect killed at any of its pause points is rolled back by gc", async () => {
  netctxOk("network", "create", "kc1", "--driver", "bridge", "--subnet", "10.85.0.0/24");
  netctxOk(
    "network",
    "create",
    "kc2",
    "--driver",
    "bridge",
    "--subnet",
    "10.86.0.0/24",
    "--subnet",
    "fd86::/64",
  );
  netctxOk("network", "create", "kc3", "--driver", "routed", "--subnet", "10.87.0.0/24");
  netctxOk("create", "cx", "--level", "l2", "--network", "kc1");
  const store = openStore();
  try {
    for (const net of ["kc2", "kc3"])
      for (const point of CONNECT_POINTS) {
        const label = `connect ${net} killed at ${point}`;
        const o = await runAndKill(["network", "connect", net, "cx"], { pauseAt: point });
        assert.ok(o.killed, `${label}: not killed: ${o.stderr}`);
        const refused = netctx("network", "connect", net, "cx");
        assert.match(refused.stderr, /did not finish \(netctx gc rolls it back\)/, label);
        const gc = netctxJson<GcJson>("gc");
        assert.ok(
          gc.actions.some((a) => a.action === "rollback" && a.object === "context cx"),
          `${label}: ${JSON.stringify(gc.actions)}`,
        );
        connectUndone(store, net, label);
      }
    // And connect works again afterwards.
    netctxOk("network", "connect", "kc2", "cx");
    assert.ok(ping(contextNetns("cx"), "10.86.0.1", { tries: 3 }));
    netctxOk("network", "disconnect", "kc2", "cx");
  } finally {
    store.close();
  }
});

test("gc leaves a live network connect alone; the connect then finishes", async () => {
  const { child, end } = await runToPause(["network", "connect", "kc2", "cx"], "connect:after-record");
  try {
    const busy = netctx("network", "connect", "kc3", "cx");
    assert.match(
      busy.stderr,
      /^error: context: context "cx" is busy: a network connect by process \d+ is under way\n$/,
    );
    const gc = netctxJson<GcJson>("gc");
    assert.deepEqual(gc.actions, [], "nothing of the live connect is touched");
    assert.deepEqual(gc.busy, ["context cx"]);
  } finally {
    child.kill("SIGCONT");
  }
  const o = await end;
  assert.equal(o.code, 0, o.stderr);
  const view = netctxJson<ConnectView>("inspect", "cx");
  assert.deepEqual(view.networks, ["kc1", "kc2"]);
  assert.ok(ping(contextNetns("cx"), "10.86.0.1", { tries: 3 }));
  assert.deepEqual(netctxJson<GcJson>("gc", "--dry-run").actions, []);
});

test("a network disconnect killed after its detach is finished by running it again", async () => {
  const store = openStore();
  try {
    const o = await runAndKill(["network", "disconnect", "kc2", "cx"], {
      pauseAt: "disconnect:after-detach",
    });
    assert.ok(o.killed, o.stderr);
    // The record still names the attachment: its lease stays taken until the disconnect finishes.
    assert.equal(leasesOf("kc2", "cx").length, 2);
    assert.equal(netctx("gc").code, 0);
    netctxOk("network", "disconnect", "kc2", "cx");
    connectUndone(store, "kc2", "disconnect finished");
  } finally {
    store.close();
  }
});
