/**
 * The fast client (issue 21, src/cli/fast-path.ts): with the engine running, create, rm, ls and inspect print the
 * same bytes and exit with the same status as the full CLI (NETCTX_FULL_CLI=1), errors included; it runs without
 * the engine's native modules; what it does not read, and every command without an engine, goes to the full CLI.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { NETCTX, type RunningEngine, startEngine } from "../utils/cli.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const SCRATCH = process.env.NETCTX_TEST_SCRATCH!;
const TRACE = join(SCRATCH, "cli-trace");
const MAPS = join(SCRATCH, "cli-maps");
/** Loaded into each CLI run through NODE_OPTIONS: at exit, the shared objects the process has mapped. */
const MAPS_PROBE = join(SCRATCH, "maps-probe.mjs");
const OTHER_STORE = join(SCRATCH, "other-store");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** "fast" or "full": the path bin/netctx took. */
  path: string;
  /** Native modules (.node) mapped at exit. */
  natives: string[];
}

function run(args: string[], env: Record<string, string> = {}): Run {
  rmSync(TRACE, { force: true });
  rmSync(MAPS, { force: true });
  const r = spawnSync(NETCTX, args, {
    encoding: "utf8",
    timeout: 60_000,
    env: {
      ...process.env,
      NETCTX_CLI_TRACE: TRACE,
      NODE_OPTIONS: `--import=${MAPS_PROBE}`,
      CLI_MAPS_OUT: MAPS,
      ...env,
    },
  });
  return {
    code: r.status,
    stdout: r.stdout,
    stderr: r.stderr,
    path: readFileSync(TRACE, "utf8").trim(),
    natives: JSON.parse(readFileSync(MAPS, "utf8")) as string[],
  };
}

const full = (args: string[], env: Record<string, string> = {}) =>
  run(args, { ...env, NETCTX_FULL_CLI: "1" });

/**
 * Each step of `steps` through the fast client, then the same steps through the full CLI (state back where it was
 * between the two): the same bytes and status step for step; `paths` says which path the fast run must take.
 */
function sameThroughBoth(
  steps: { args: string[]; path: "fast" | "full"; env?: Record<string, string> }[],
): Run[] {
  const fastRuns = steps.map((s) => run(s.args, s.env));
  const fullRuns = steps.map((s) => full(s.args, s.env));
  for (const [i, s] of steps.entries()) {
    const [f, c] = [fastRuns[i]!, fullRuns[i]!];
    const what = `netctx ${s.args.join(" ")}`;
    assert.equal(f.path, s.path, `${what}: taken by the ${s.path} path`);
    assert.equal(c.path, "full");
    assert.deepEqual(
      { code: f.code, stdout: f.stdout, stderr: f.stderr },
      { code: c.code, stdout: c.stdout, stderr: c.stderr },
      what,
    );
  }
  return fastRuns;
}

let engine: RunningEngine;

before(async () => {
  writeFileSync(
    MAPS_PROBE,
    `import { readFileSync, writeFileSync } from "node:fs";
process.on("exit", () => {
  const mapped = readFileSync("/proc/self/maps", "utf8").split("\\n").map((l) => l.split(/\\s+/)[5] ?? "");
  writeFileSync(process.env.CLI_MAPS_OUT, JSON.stringify([...new Set(mapped.filter((p) => p.endsWith(".node")))]));
});
`,
  );
  // A store for the engine to serve: one network, one context to list and inspect.
  for (const args of [
    ["network", "create", "fastnet", "--subnet", "10.93.0.0/24"],
    ["create", "stay", "--level", "l2", "--network", "fastnet", "--label", "app=web"],
  ]) {
    const r = full(args);
    assert.equal(r.code, 0, r.stderr);
  }
  engine = await startEngine();
});
after(() => engine?.stop());

test("with the engine, ls and inspect print the full CLI's bytes, without loading the engine's native modules", () => {
  const [table, , inspected] = sameThroughBoth([
    { args: ["ls"], path: "fast" },
    { args: ["ls", "--json"], path: "fast" },
    { args: ["inspect", "stay"], path: "fast" },
    { args: ["inspect", "stay", "--json"], path: "fast" },
    { args: ["inspect", "ghost"], path: "fast" },
    { args: ["--state-dir", process.env.NETCTX_STATE_DIR!, "ls"], path: "fast" },
    { args: ["ls", `--state-dir=${process.env.NETCTX_STATE_DIR!}`], path: "fast" },
  ]);
  assert.match(
    table!.stdout,
    /^NAME +LEVEL +STATUS +NETWORKS +ADDRESSES +LABELS\nstay +l2 +ready +fastnet +10\.93\.0\.\d+\/24 +app=web\n$/,
  );
  assert.equal(JSON.parse(inspected!.stdout).name, "stay");
  assert.deepEqual(table!.natives, [], "no koffi, no SQLite in the fast path");
  const loaded = full(["ls"]).natives.join(" ");
  assert.match(loaded, /koffi/, "the probe sees what the full CLI loads");
});

test("with the engine, create and rm print the full CLI's bytes and statuses, errors as one line", () => {
  const runs = sameThroughBoth([
    { args: ["create", "fresh", "--level", "l2", "--network", "fastnet", "--alias", "f1"], path: "fast" },
    { args: ["create", "fresh", "--level", "l2", "--network", "fastnet"], path: "fast" },
    { args: ["create", "bad", "--level", "l9", "--network", "fastnet"], path: "fast" },
    { args: ["create", "out", "--level", "l2", "--network", "fastnet", "--ip", "10.99.0.1"], path: "fast" },
    { args: ["rm", "fresh", "ghost"], path: "fast" },
    { args: ["rm", "-i", "ghost"], path: "fast" },
    { args: ["rm", "--ignore", "ghost", "--force"], path: "fast" },
  ]);
  assert.equal(runs[0]!.stdout, "fresh\n");
  assert.equal(runs[1]!.code, 1);
  assert.match(runs[1]!.stderr, /^error: [^\n]*fresh[^\n]*\n$/, "a duplicate: one line");
  assert.match(runs[2]!.stderr, /^error: [^\n]*level[^\n]*\n$/);
  assert.match(runs[3]!.stderr, /^error: ip: 10\.99\.0\.1 is outside[^\n]*\n$/);
  assert.deepEqual(
    [runs[4]!.code, runs[4]!.stdout, runs[4]!.stderr],
    [1, "fresh\n", 'error: context "ghost" does not exist\n'],
  );
  assert.match(runs[5]!.stderr, /^note: context "ghost" does not exist/);
  assert.equal(runs[5]!.code, 0);
});

test("what the fast client does not read goes to the full CLI: help, bad options, client-side checks, other commands", () => {
  sameThroughBoth([
    { args: ["ls", "--help"], path: "full" },
    { args: ["create", "x", "--network", "fastnet"], path: "full" },
    { args: ["create", "x", "--level", "l2", "--label", "netctx.scene=mine"], path: "full" },
    { args: ["create", "x", "--level", "l2", "--bandwidth", "fast"], path: "full" },
    { args: ["ls", "--wide"], path: "full" },
    { args: ["ls", "extra"], path: "full" },
    { args: ["inspect"], path: "full" },
    { args: ["rm", "--", "ghost"], path: "full" },
    { args: ["--state-dir", "/nonexistent-a", "ls", "--state-dir", "/nonexistent-b"], path: "full" },
    { args: ["network", "ls"], path: "full" },
    // Another store, which no engine serves: the fast client must not ask this store's engine.
    { args: ["ls", "--state-dir", OTHER_STORE], path: "full" },
    { args: ["--state-dir", OTHER_STORE, "ls"], path: "full" },
    { args: ["ls"], path: "full", env: { NETCTX_STATE_DIR: OTHER_STORE } },
  ]);
});

test("--version is package.json's, from the fast client and the full CLI alike", () => {
  const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string })
    .version;
  const [fast] = sameThroughBoth([{ args: ["--version"], path: "fast" }]);
  assert.equal(fast!.stdout, `${version}\n`);
  assert.deepEqual(fast!.natives, []);
});

test("without an engine (stopped, or its socket left behind by a kill) every command runs in the full CLI", async () => {
  await engine.stop("SIGKILL");
  for (const args of [["ls"], ["inspect", "stay"], ["rm", "-i", "ghost"]]) {
    const r = run(args);
    const c = full(args);
    assert.equal(r.path, "full", `netctx ${args.join(" ")}`);
    assert.deepEqual([r.code, r.stdout, r.stderr], [c.code, c.stdout, c.stderr]);
  }
  assert.match(run(["ls"]).stdout, /^stay /m);
});
