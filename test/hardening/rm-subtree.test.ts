/**
 * Escape 3 of issue 15: root inside a context makes a child cgroup of the context's cgroup (user and cgroup
 * namespaces, a fresh cgroup2 mount) and moves into it. rm must see that process (the whole subtree counts), refuse
 * before changing anything, and keep the programs attached; `rm --force` kills the subtree and removes everything.
 * The test plays the escaping root from outside: it makes the child cgroup and moves the process there itself.
 * Pids are found by scanning the context's cgroup subtree, not by the shape of exec's process tree.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { progFdById } from "../../src/kernel/bpf/attach.ts";
import { querySocketPolicy } from "../../src/kernel/bpf/socket-policy.ts";
import { closeFd } from "../../src/kernel/bpf/syscall.ts";
import { killSubtree } from "../../src/kernel/cgroup-kill.ts";
import { PAUSE_ENV, PAUSE_MARK } from "../../src/pause.ts";
import { commOf, procsOf } from "../utils/cgroup.ts";
import {
  NETCTX,
  netctx,
  netctxAsync,
  netctxJson,
  netctxOk,
  type RunningEngine,
  startEngine,
} from "../utils/cli.ts";
import { sh } from "../utils/shell.ts";
import { type ProbeResult, probe, probeSync } from "../utils/socket-probe.ts";
import { sleep, waitFor, within } from "../utils/wait.ts";

interface View {
  name: string;
  status: string;
  addresses: string[];
  cgroup?: string;
  table?: number;
}

/** Every cgroup of the subtree, read here rather than through src/, so the test does not share a bug with it. */
function subtree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return [
    dir,
    ...readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .flatMap((e) => subtree(join(dir, e.name))),
  ];
}

/** The pid of the command `sleep` running somewhere in the cgroup's subtree, once it is there. */
async function sleeperIn(cgroup: string): Promise<number> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const pid = subtree(cgroup)
      .flatMap(procsOf)
      .find((p) => commOf(p) === "sleep");
    if (pid !== undefined) return pid;
    await sleep(20);
  }
  throw new Error(`no sleep process showed up in ${cgroup}`);
}

/**
 * What root inside the context would do with its own cgroup2 mount: a child cgroup, and itself moved in. Every process
 * of the context's own cgroup goes (whatever exec runs around the command), so its cgroup.procs is left empty.
 */
function escapeToChild(cgroup: string, pid: number, child = "escape"): string {
  const dir = join(cgroup, child);
  mkdirSync(dir);
  for (const p of new Set([...procsOf(cgroup), pid])) writeFileSync(join(dir, "cgroup.procs"), String(p));
  assert.ok(procsOf(dir).includes(pid), "moved into the child cgroup");
  assert.deepEqual(procsOf(cgroup), [], "the context's own cgroup.procs is empty");
  return dir;
}

/** A probe started straight in a given cgroup (the child cgroup the escaped process sits in). */
function probeInCgroup(cgroup: string, host: string): ProbeResult {
  const r = probeSync({ cgroup }, [{ op: "bind", host }]);
  assert.equal(r.status, 0, r.stderr);
  return r.results[0]!;
}

/** `netctx exec NAME -- sleep 600`, left running; resolves its exit code once it ends. */
function execSleeper(name: string): { child: ChildProcess; exited: Promise<number | null> } {
  const child = spawn(NETCTX, ["exec", name, "--", "sleep", "600"], { stdio: "ignore" });
  const exited = new Promise<number | null>((r) =>
    child.on("close", (code, signal) => r(code ?? (signal ? -1 : null))),
  );
  return { child, exited };
}

function programsLive(ids: number[]): number {
  return ids.filter((id) => {
    try {
      closeFd(progFdById(id));
      return true;
    } catch {
      return false;
    }
  }).length;
}

/** Processes this file started; a failing test can leave them, and the last `after` ends them. */
const ours: ChildProcess[] = [];

/** Program ids attached to the cgroup itself (the socket hooks, and whatever else a level attaches). */
function attachedIds(cgroup: string): number[] {
  return querySocketPolicy(cgroup)
    .flatMap((h) => h.progIds)
    .sort((a, b) => a - b);
}

/**
 * Whatever a failing test left running: our own children by pid, and what runs in this file's private cgroup parent
 * (the commands exec started there, which are not our children).
 */
after(() => {
  for (const c of ours) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  const parent = process.env.NETCTX_CGROUP_PARENT!;
  if (!existsSync(parent)) return;
  for (const e of readdirSync(parent, { withFileTypes: true }))
    if (e.isDirectory()) writeFileSync(join(parent, e.name, "cgroup.kill"), "1");
});

function statusOf(name: string): string | undefined {
  return netctxJson<View[]>("ls").find((v) => v.name === name)?.status;
}

describe("rm with a process in a child cgroup", () => {
  let foreign = "";

  before(() => {
    netctxOk("network", "create", "hn", "--driver", "host", "--subnet", "10.151.0.0/24");
    netctxOk("create", "other", "--level", "socket", "--network", "hn");
    foreign = netctxJson<View>("inspect", "other").addresses[0]!.split("/")[0]!;
  });

  after(() => {
    for (const name of ["a", "t", "late", "other"]) netctx("rm", "--force", name);
    netctx("network", "rm", "hn");
  });

  for (const level of ["socket", "l3"] as const) {
    test(`${level}: rm refuses naming the pid and changes nothing; rm --force kills the subtree and removes it`, async () => {
      const name = level === "socket" ? "a" : "t";
      netctxOk("create", name, "--level", level, "--network", "hn");
      const view = netctxJson<View>("inspect", name);
      const cgroup = view.cgroup!;
      const rulesBefore = sh("ip -4 rule show");
      const { child, exited } = execSleeper(name);
      ours.push(child);
      const pid = await sleeperIn(cgroup);
      const escaped = escapeToChild(cgroup, pid);
      const ids = attachedIds(cgroup);
      assert.ok(ids.length >= 8, "a program at each socket hook, at least");

      // Outside any context the other context's address binds; from the escaped process's cgroup it must not.
      assert.equal(
        (await probe(undefined, [{ op: "bind", host: foreign }]))[0]!.ok,
        true,
        "control: bind outside",
      );

      const refused = netctx("rm", name);
      assert.notEqual(refused.code, 0, "rm refuses");
      assert.match(refused.stderr, new RegExp(`processes .*\\b${pid} \\(sleep\\)`), refused.stderr);
      assert.match(refused.stderr, /use --force to kill them/);
      assert.equal(statusOf(name), "ready", "the record is untouched");
      assert.deepEqual(attachedIds(cgroup), ids, "the same programs stay attached");
      assert.deepEqual(probeInCgroup(escaped, foreign), { ok: false, code: "EPERM" }, "still confined");
      assert.equal(commOf(pid), "sleep", "the process still runs");
      if (level === "l3") {
        assert.equal(sh("ip -4 rule show"), rulesBefore, "its policy rules stay");
        assert.notEqual(sh(`ip -j route show table ${view.table}`).trim(), "[]", "its table stays");
      }

      const forced = netctx("rm", "--force", name);
      assert.equal(forced.code, 0, forced.stderr);
      assert.equal(forced.stdout, `${name}\n`);
      await within(exited, 10_000, "the exec's end");
      assert.notEqual(commOf(pid), "sleep", "the process is gone");
      assert.equal(existsSync(cgroup), false, "the cgroup and its child are gone");
      assert.equal(statusOf(name), undefined, "the record is gone");
      // rmdir took the programs along: freed once nothing holds them.
      await waitFor(() => programsLive(ids) === 0, 2000);
      assert.equal(programsLive(ids), 0, "the programs are freed");
    });
  }

  test("a teardown that fails after the check (a process joined meanwhile) leaves nothing stuck", async () => {
    netctxOk("create", "late", "--level", "socket", "--network", "hn");
    const cgroup = netctxJson<View>("inspect", "late").cgroup!;
    const ids = attachedIds(cgroup);
    // rm passes its check (nothing runs), marks the record and stops there; then a process joins, as one started by
    // an exec that read "ready" before the mark would.
    const rm = spawn(NETCTX, ["rm", "late"], {
      env: { ...process.env, [PAUSE_ENV]: "rm:after-mark" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    const paused = new Promise<void>((resolve) =>
      rm.stderr.on("data", (d) => {
        stderr += d;
        if (stderr.includes(`${PAUSE_MARK}rm:after-mark`)) resolve();
      }),
    );
    const rmExit = new Promise<number | null>((r) => rm.on("close", r));
    await within(paused, 15_000, "rm reaching its mark");
    const joiner = spawn(
      "sh",
      [
        "-c",
        `mkdir "$1/late-joiner" && echo $$ > "$1/late-joiner/cgroup.procs" && exec sleep 600`,
        "sh",
        cgroup,
      ],
      { stdio: "ignore" },
    );
    ours.push(joiner);
    const pid = await sleeperIn(cgroup);
    rm.kill("SIGCONT");
    assert.notEqual(await within(rmExit, 15_000, "rm's end"), 0, "the teardown refuses");
    assert.match(stderr, new RegExp(`${pid} \\(sleep\\).*use --force to kill them`));
    assert.equal(statusOf("late"), "removing");
    assert.deepEqual(attachedIds(cgroup), ids, "the programs stay while the process runs");
    assert.deepEqual(probeInCgroup(join(cgroup, "late-joiner"), foreign), { ok: false, code: "EPERM" });
    // gc takes it on (it is nobody's work in progress) and names the processes; --force finishes it.
    const plan = netctxJson<{ actions: { action: string; object: string }[]; busy: string[] }>(
      "gc",
      "--dry-run",
    );
    assert.ok(
      plan.actions.some((a) => a.action === "finish-rm" && a.object === "context late"),
      JSON.stringify(plan),
    );
    assert.deepEqual(plan.busy, []);
    const gcRun = netctx("gc");
    assert.match(
      gcRun.stdout,
      new RegExp(`finish-rm context late: .*failed: context: processes ${pid} \\(sleep\\)`),
    );
    assert.equal(statusOf("late"), "removing");
    netctxOk("rm", "--force", "late");
    assert.equal(statusOf("late"), undefined);
    assert.equal(existsSync(cgroup), false);
  });

  test("without cgroup.kill: SIGKILL pid by pid, round after round, catches a forking subtree", async () => {
    const root = join(process.env.NETCTX_CGROUP_PARENT!, "fallback");
    mkdirSync(join(root, "a", "b"), { recursive: true });
    // One process per level, one of them forking a new child every 20 ms.
    for (const [dir, script] of [
      [root, "exec sleep 600"],
      [join(root, "a"), "while :; do sleep 0.02; done"],
      [join(root, "a", "b"), "exec sleep 600"],
    ] as const) {
      const c = spawn("sh", ["-c", `echo $$ > "$1/cgroup.procs" && ${script}`, "sh", dir], {
        stdio: "ignore",
      });
      ours.push(c);
    }
    await waitFor(() => subtree(root).flatMap(procsOf).length >= 3, 10_000);
    assert.ok(subtree(root).flatMap(procsOf).length >= 3);
    assert.deepEqual(killSubtree(root, { cgroupKill: false }), [], "the subtree is empty");
    assert.deepEqual(subtree(root).flatMap(procsOf), []);
    sh(`rmdir ${join(root, "a", "b")} ${join(root, "a")} ${root}`);
  });
});

describe("rm --force through the resident engine", () => {
  let engine: RunningEngine;

  before(async () => {
    engine = await startEngine();
    assert.match(engine.log(), /serving on/);
    netctxOk("network", "create", "he", "--driver", "host", "--subnet", "10.152.0.0/24");
  });

  after(async () => {
    netctx("rm", "--force", "e");
    netctx("network", "rm", "he");
    await engine.stop();
  });

  test("DELETE refuses naming the process, and ?force=1 kills it", async () => {
    netctxOk("create", "e", "--level", "socket", "--network", "he");
    const cgroup = netctxJson<View>("inspect", "e").cgroup!;
    const ids = attachedIds(cgroup);
    const { child, exited } = execSleeper("e");
    ours.push(child);
    const pid = await sleeperIn(cgroup);
    escapeToChild(cgroup, pid);
    const refused = netctx("rm", "e");
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, new RegExp(`${pid} \\(sleep\\).*use --force to kill them`));
    assert.equal(statusOf("e"), "ready");
    assert.deepEqual(attachedIds(cgroup), ids);
    netctxOk("rm", "--force", "e");
    await within(exited, 10_000, "the exec's end");
    assert.equal(existsSync(cgroup), false);
    assert.equal(statusOf("e"), undefined);
    await waitFor(() => /DELETE \/v1\/contexts\/e\?force=1 -> 200/.test(engine.log()), 5000);
    assert.match(engine.log(), /DELETE \/v1\/contexts\/e -> 409/);
    assert.match(engine.log(), /DELETE \/v1\/contexts\/e\?force=1 -> 200/);
  });
});

/** The state letter of /proc/PID/stat (R, S, T for stopped, ...). */
function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return undefined;
  }
}

describe("a teardown that fails inside the resident engine", () => {
  let engine: RunningEngine;
  let pauses = 0;

  /** The engine stops itself at rm:after-mark (SIGSTOP); resolves once it has, for the n-th time. */
  async function pausedFor(n: number): Promise<void> {
    await waitFor(() => pauses >= n, 15_000);
    assert.equal(pauses, n, "the engine reached its pause point");
    // The mark comes just before the engine stops itself: a SIGCONT sent in between would be lost and leave it
    // stopped for good, so wait until the kernel shows it stopped.
    await waitFor(() => processState(engine.child.pid!) === "T", 15_000);
  }

  before(async () => {
    engine = await startEngine({
      env: { [PAUSE_ENV]: "rm:after-mark" },
      // A paused netctx says so on stderr (pause.ts), once a pause.
      onStderr: (d) => {
        pauses += d.split(`${PAUSE_MARK}rm:after-mark`).length - 1;
      },
    });
    ours.push(engine.child);
    assert.match(engine.log(), /serving on/);
    netctxOk("network", "create", "hz", "--driver", "host", "--subnet", "10.153.0.0/24");
  });

  after(async () => {
    engine.child.kill("SIGCONT");
    await engine.stop();
    netctx("rm", "--force", "z");
    netctx("network", "rm", "hz");
  });

  test("leaves the record to gc, not busy for as long as the engine lives", async () => {
    netctxOk("create", "z", "--level", "socket", "--network", "hz");
    const cgroup = netctxJson<View>("inspect", "z").cgroup!;
    const rm = netctxAsync("rm", "z");
    await pausedFor(1);
    const joiner = spawn(
      "sh",
      ["-c", `mkdir "$1/j" && echo $$ > "$1/j/cgroup.procs" && exec sleep 600`, "sh", cgroup],
      { stdio: "ignore" },
    );
    ours.push(joiner);
    const pid = await sleeperIn(cgroup);
    engine.child.kill("SIGCONT");
    const refused = await within(rm, 15_000, "rm's end");
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, new RegExp(`${pid} \\(sleep\\).*use --force to kill them`));
    assert.equal(statusOf("z"), "removing");
    // The engine that ran the rm still lives; the record is nobody's work in progress all the same.
    const plan = netctxJson<{ actions: { action: string; object: string }[]; busy: string[] }>(
      "gc",
      "--dry-run",
    );
    assert.deepEqual(plan.busy, [], "not skipped as busy");
    assert.ok(plan.actions.some((a) => a.action === "finish-rm" && a.object === "context z"));
    const forced = netctxAsync("rm", "--force", "z");
    await pausedFor(2);
    engine.child.kill("SIGCONT");
    assert.equal((await within(forced, 15_000, "rm --force's end")).code, 0);
    assert.equal(statusOf("z"), undefined);
    assert.equal(existsSync(cgroup), false);
  });
});
