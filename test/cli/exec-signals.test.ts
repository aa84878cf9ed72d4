/**
 * `netctx exec` passes on the signals sent to it and exits as a shell would (issue 17): the command's status,
 * 128+N for a signal, and podman's 125/126/127 for netctx's own failures, so they are not mistaken for the command's.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { before, test } from "node:test";
import { NETCTX, netctx, netctxOk } from "../utils/cli.ts";
import { startLines } from "../utils/line-process.ts";
import { waitFor, within } from "../utils/wait.ts";

before(() => {
  netctxOk("network", "create", "sig", "--driver", "bridge", "--subnet", "10.84.0.0/24");
  netctxOk("network", "create", "sighn", "--driver", "host", "--subnet", "10.85.0.0/24");
  netctxOk("create", "s2", "--level", "l2", "--network", "sig");
  netctxOk("create", "ss", "--level", "socket", "--network", "sighn");
});

const FORWARDED = ["TERM", "INT", "HUP", "QUIT", "USR1", "USR2", "WINCH"] as const;

/** A command that traps `sig`, says "ready" and, once the signal arrived, prints a marker and exits 0. */
function trapping(sig: string): string {
  return `trap 'echo got-${sig}; exit 0' ${sig}; echo ready; while :; do sleep 0.05; done`;
}

for (const context of ["s2", "ss"]) {
  for (const sig of FORWARDED) {
    test(`SIG${sig} sent to netctx exec reaches the command (${context})`, async () => {
      const p = startLines([NETCTX, "exec", context, "--", "sh", "-c", trapping(sig)]);
      assert.equal(await within(p.next(), 20_000, "ready"), "ready");
      p.child.kill(`SIG${sig}`);
      assert.equal(await within(p.next(), 10_000, `marker for SIG${sig}`), `got-${sig}`);
      assert.equal(await within(p.exited, 10_000, "exit"), 0, "the command's status");
    });
  }
}

/** Every process below `pid` (its children, theirs, ...), from /proc. */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // the command name may hold spaces and parentheses: the ppid is the second field after the last ")"
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, ppid] of parent)
      if (ppid === p) {
        out.push(child);
        walk(child);
      }
  };
  walk(pid);
  return out;
}

function alive(pid: number): boolean {
  try {
    // a zombie still answers kill(0): read its state instead
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

for (const context of ["s2", "ss"]) {
  test(`SIGTERM to netctx exec leaves no process of the command running (${context})`, async () => {
    // a background child and a grandchild too: the whole tree goes, not only the command
    const p = startLines([
      NETCTX,
      "exec",
      context,
      "--",
      "sh",
      "-c",
      "sleep 1000 & sh -c 'sleep 1001 & wait' & echo ready; wait",
    ]);
    assert.equal(await within(p.next(), 20_000, "ready"), "ready");
    let tree: number[] = [];
    await waitFor(() => {
      tree = descendants(p.child.pid!);
      return tree.length >= 5; // PID 1 of the sandbox, sh, sleep, sh, sleep
    }, 5000);
    assert.ok(tree.length >= 5, `processes below netctx exec: ${tree.join(" ")}`);
    p.child.kill("SIGTERM");
    assert.equal(await within(p.exited, 10_000, "exit"), 128 + 15, "128 + SIGTERM, as a shell says it");
    await waitFor(() => !tree.some(alive), 5000);
    assert.deepEqual(
      tree.filter(alive),
      [],
      "no process of the command is left (none reparented to PID 1 of the host)",
    );
  });
}

test("SIGKILL to netctx exec takes the command with it", async () => {
  const p = startLines([NETCTX, "exec", "s2", "--", "sh", "-c", "echo ready; sleep 1000"]);
  assert.equal(await within(p.next(), 20_000, "ready"), "ready");
  let tree: number[] = [];
  await waitFor(() => {
    tree = descendants(p.child.pid!);
    return tree.length >= 3;
  }, 5000);
  p.child.kill("SIGKILL");
  await within(p.exited, 10_000, "exit");
  await waitFor(() => !tree.some(alive), 5000);
  assert.deepEqual(tree.filter(alive), []);
});

const statuses: [string, string[], number, RegExp | undefined][] = [
  ["the command's own status", ["exec", "s2", "--", "sh", "-c", "exit 3"], 3, undefined],
  ["success", ["exec", "ss", "--", "true"], 0, undefined],
  [
    "128+N when signal N ended the command",
    ["exec", "s2", "--", "sh", "-c", "kill -KILL $$"],
    137,
    undefined,
  ],
  ["128+N at the socket level too", ["exec", "ss", "--", "sh", "-c", "kill -TERM $$"], 143, undefined],
  ["125: unknown context", ["exec", "ghost", "--", "true"], 125, /^error: context "ghost" does not exist$/],
  [
    "125: unknown option",
    ["exec", "--colour", "red", "s2", "--", "true"],
    125,
    /^error: unknown option '--colour'$/,
  ],
  ["125: no context named", ["exec"], 125, /^error: missing required argument 'name'$/],
  ["125: bad --rw", ["exec", "--rw", "relative", "s2", "--", "true"], 125, /^error: rw: /],
  [
    "126: found but not executable",
    ["exec", "s2", "--", "/etc/passwd"],
    126,
    /\/etc\/passwd: Permission denied/,
  ],
  ["127: not found", ["exec", "s2", "--", "/no/such/command"], 127, /\/no\/such\/command: No such file/],
  [
    "127: not found on PATH",
    ["exec", "ss", "--", "no-such-command-x"],
    127,
    /no-such-command-x: No such file/,
  ],
];

for (const [what, args, code, message] of statuses) {
  test(`exec exit status: ${what}`, () => {
    const r = netctx(...args);
    assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    if (message) {
      assert.match(r.stderr.trim(), message);
      assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
    }
  });
}

test("exec --help exits 0 and documents the signals and the exit statuses", () => {
  const r = netctx("exec", "--help");
  assert.equal(r.code, 0);
  for (const sig of FORWARDED) assert.match(r.stdout, new RegExp(sig));
  for (const code of ["125", "126", "127", "128\\+N"]) assert.match(r.stdout, new RegExp(`^  ${code} `, "m"));
});

test("exec into a context that is not ready: 125", async () => {
  // a create stopped half-way (pause point, then SIGKILL) leaves its record "creating"
  const child = spawn(NETCTX, ["create", "half", "--level", "l2", "--network", "sig"], {
    env: { ...process.env, NETCTX_PAUSE_AT: "create:after-netns" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  await waitFor(() => stderr.includes("netctx-pause: create:after-netns"), 20_000);
  const exited = new Promise((resolve) => child.once("close", resolve));
  child.kill("SIGKILL");
  await exited;
  const r = netctx("exec", "half", "--", "true");
  assert.equal(r.code, 125, r.stderr);
  assert.match(r.stderr, /^error: .*context "half" is creating, not ready$/m);
  netctxOk("gc");
});
