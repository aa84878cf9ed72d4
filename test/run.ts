/**
 * Test runner: every test file runs in its own throwaway host namespace (see src/sandbox.ts) with a private
 * state directory and a private cgroup parent, so files cannot see each other's kernel objects or state.
 * Prints node's spec output per file with its wall time, then the 15 slowest files, each job's busy time, and one
 * closing line: `tests: N passed, N failed, N skipped`. Files run longest first (test/durations.json).
 *   npm test                 all files
 *   npm test -- kernel ipam  only files whose path contains one of the words
 *   NETCTX_TEST_RECORD=1     write the files' wall times into test/durations.json
 */
import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { cgroup2Root } from "../src/kernel/cgroup.ts";
import { sandboxArgv } from "../src/sandbox.ts";

const root = join(import.meta.dirname, "..");
/** Where cgroup v2 is mounted on this machine (/sys/fs/cgroup on most, /sys/fs/cgroup/unified on hybrid ones). */
const CGROUP_ROOT = cgroup2Root();
const concurrency = Number(process.env.NETCTX_TEST_JOBS ?? 2);
/** The longest one file may run (the slowest takes about 2 minutes alone on 2 cores). */
const FILE_LIMIT_S = Number(process.env.NETCTX_TEST_FILE_LIMIT_S ?? 600);

function findTests(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...findTests(path));
    else if (entry.endsWith(".test.ts")) out.push(path);
  }
  return out.sort();
}

/** Remove a cgroup tree bottom-up; cgroup directories are removed with rmdir, never rm -r. */
function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) removeCgroupTree(join(dir, entry.name));
  }
  try {
    rmdirSync(dir);
  } catch (err) {
    console.error(`warning: could not remove test cgroup ${dir}: ${(err as Error).message}`);
  }
}

interface FileResult {
  file: string;
  pass: number;
  fail: number;
  skip: number;
  code: number | null;
  output: string;
  /** Wall time of the file's process, start to close. */
  ms: number;
}

function tapCount(tap: string, key: string): number {
  const m = tap.match(new RegExp(`^# ${key} (\\d+)$`, "m"));
  return m ? Number(m[1]) : 0;
}

/**
 * Removes a file's scratch directory, trying again while something of the file's (a process that left its group)
 * still writes into it; the error's text when it could not, for the file's output (the run goes on).
 */
function removeScratch(dir: string): string | undefined {
  for (let attempt = 0; ; attempt++)
    try {
      rmSync(dir, { recursive: true, force: true });
      return undefined;
    } catch (err) {
      if (attempt >= 10) return (err as Error).message;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    }
}

function runFile(file: string): Promise<FileResult> {
  const fileStarted = Date.now();
  const scratch = mkdtempSync(join(tmpdir(), "netctx-test-"));
  const tapFile = join(scratch, "out.tap");
  const cgroupParent = join(
    CGROUP_ROOT,
    `netctx-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
  );
  const argv = sandboxArgv([
    process.execPath,
    "--import",
    "tsx",
    "--test",
    "--test-reporter=spec",
    "--test-reporter-destination=stdout",
    "--test-reporter=tap",
    `--test-reporter-destination=${tapFile}`,
    file,
  ]);
  const env = {
    ...process.env,
    NETCTX_STATE_DIR: join(scratch, "state"),
    NETCTX_CGROUP_PARENT: cgroupParent,
    NETCTX_TEST_SCRATCH: scratch,
    // The tests run the repository's probe scripts inside contexts, and a checkout may lie under the host's /tmp,
    // which a context does not see (it has its own): `netctx exec` keeps the repository in view, read-only.
    NETCTX_EXEC_RO: root,
  };
  return new Promise((resolve) => {
    // Its own process group, so that a file that hangs (a hook failed and left a server holding it open) is ended
    // whole after FILE_LIMIT_S and counted as a failure, instead of holding the run up until CI's own limit.
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: root,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let output = "";
    const limit = setTimeout(() => {
      output += `\n[test runner] ${relative(root, file)} still ran after ${FILE_LIMIT_S} s: ended\n`;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    }, FILE_LIMIT_S * 1000);
    child.stdout.on("data", (d) => {
      output += d;
    });
    child.stderr.on("data", (d) => {
      output += d;
    });
    child.on("close", (code) => {
      clearTimeout(limit);
      // What the file left running in its process group ends with it: an etcd still writing into the scratch made
      // its removal fail (ENOTEMPTY) and took the whole run down.
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // nothing left
      }
      const tap = existsSync(tapFile) ? readFileSync(tapFile, "utf8") : "";
      removeCgroupTree(cgroupParent);
      const kept = removeScratch(scratch);
      if (kept) output += `\n[test runner] could not remove ${scratch}: ${kept}\n`;
      const result = {
        file,
        pass: tapCount(tap, "pass"),
        fail: tapCount(tap, "fail") + tapCount(tap, "cancelled"),
        skip: tapCount(tap, "skipped") + tapCount(tap, "todo"),
        code,
        output,
        ms: Date.now() - fileStarted,
      };
      // A file that died before reporting anything counts as one failure.
      if (code !== 0 && result.fail === 0) result.fail = 1;
      resolve(result);
    });
  });
}

/**
 * What the suite may leave on the machine itself, outside every file's throwaway namespaces: named network
 * namespaces in the host's /run/netns, links in the host's network namespace, netctx cgroups under the cgroup2 root.
 * Read before and after the run: anything new is a leak (a test that made it outside its sandbox), and fails the run.
 */
/** A test cgroup of another runner working beside this one (a second checkout's tests): its own to remove. */
function anotherRunners(cgroup: string): boolean {
  const runner = /^netctx-test-(\d+)-/.exec(cgroup)?.[1];
  return runner !== undefined && runner !== String(process.pid);
}

function hostFootprint(): Set<string> {
  const names = (dir: string) => (existsSync(dir) ? readdirSync(dir) : []);
  const links = spawnSync("ip", ["-j", "link", "show"], { encoding: "utf8" });
  const linkNames =
    links.status === 0 ? (JSON.parse(links.stdout) as { ifname: string }[]).map((l) => l.ifname) : [];
  return new Set([
    ...names("/run/netns").map((n) => `netns ${n}`),
    ...linkNames.map((n) => `link ${n}`),
    ...names(CGROUP_ROOT)
      .filter((n) => n.startsWith("netctx") && !anotherRunners(n))
      .map((n) => `cgroup ${join(CGROUP_ROOT, n)}`),
  ]);
}

const footprint = hostFootprint();
const filters = process.argv.slice(2);
const files = findTests(join(root, "test")).filter(
  (f) => filters.length === 0 || filters.some((w) => relative(root, f).includes(w)),
);
/**
 * Each file's wall time in the last full run (seconds; `NETCTX_TEST_RECORD=1 npm test` rewrites it). The jobs take
 * the longest files first, so that no job starts a two-minute file while the other is nearly done: both end together.
 * A file not in the table (a new one) goes first, as it may be long.
 */
const DURATIONS = join(root, "test", "durations.json");
const known: Record<string, number> = existsSync(DURATIONS)
  ? JSON.parse(readFileSync(DURATIONS, "utf8"))
  : {};
const expected = (f: string) => known[relative(root, f)] ?? Number.POSITIVE_INFINITY;
const results: FileResult[] = [];
const queue = [...files].sort((a, b) => expected(b) - expected(a));
const started = Date.now();
const s1 = (ms: number) => (ms / 1000).toFixed(1);
const busyMs: number[] = [];
await Promise.all(
  Array.from({ length: Math.min(concurrency, queue.length) }, async (_, job) => {
    busyMs[job] = 0;
    for (let file = queue.shift(); file; file = queue.shift()) {
      const r = await runFile(file);
      results.push(r);
      busyMs[job]! += r.ms;
      const secs = ((Date.now() - started) / 1000).toFixed(0);
      process.stdout.write(
        `\n=== ${relative(root, file)} (${r.pass} passed, ${r.fail} failed) in ${s1(r.ms)}s, at ${secs}s\n${r.output}`,
      );
    }
  }),
);
// Where the wall time went: the slowest files and how busy each job was (jobs that end far apart waste a core).
const slowest = [...results].sort((a, b) => b.ms - a.ms).slice(0, 15);
console.log(`\nslowest files: ${slowest.map((r) => `${relative(root, r.file)} ${s1(r.ms)}s`).join(", ")}`);
console.log(
  `jobs busy: ${busyMs.map((ms) => `${s1(ms)}s`).join(", ")}; wall ${s1(Date.now() - started)}s for ${files.length} files`,
);
if (process.env.NETCTX_TEST_RECORD === "1") {
  // Files this run did not measure keep their last figure; files that no longer exist drop out.
  const measured = new Map(results.map((r) => [relative(root, r.file), Math.round(r.ms / 100) / 10]));
  const table = findTests(join(root, "test"))
    .map((f) => relative(root, f))
    .filter((f) => measured.has(f) || f in known)
    .map((f) => [f, measured.get(f) ?? known[f]!] as const);
  writeFileSync(DURATIONS, `${JSON.stringify(Object.fromEntries(table), null, 2)}\n`);
}
const sum = (k: "pass" | "fail" | "skip") => results.reduce((n, r) => n + r[k], 0);
const failedFiles = results.filter((r) => r.fail > 0).map((r) => relative(root, r.file));
if (failedFiles.length) console.log(`\nfailed files: ${failedFiles.join(", ")}`);
const leaked = [...hostFootprint()].filter((x) => !footprint.has(x));
if (leaked.length)
  console.log(`\nleft on the machine itself, outside the tests' namespaces: ${leaked.join(", ")}`);
console.log(`\ntests: ${sum("pass")} passed, ${sum("fail")} failed, ${sum("skip")} skipped`);
process.exit(sum("fail") > 0 || leaked.length > 0 || files.length === 0 ? 1 : 0);
