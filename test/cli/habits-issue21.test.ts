/**
 * CLI habits (issue 21): shell completion generated from the command tree, `help TOPIC` and the man page from the
 * definitions --help reads, --json on every command that prints, and progress for gc, audit and destroy past 2 s
 * (a bar on a terminal, plain lines on stderr elsewhere, nothing with --json). --version: test/cli/fast-path.test.ts.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { Command } from "commander";
import { bashCompletion } from "../../src/cli/completion.ts";
import { commandPaths } from "../../src/cli/help.ts";
import { buildProgram } from "../../src/cli/program.ts";
import { NETCTX, netctx, netctxOk, netctxParallel } from "../utils/cli.ts";

const SCRATCH = process.env.NETCTX_TEST_SCRATCH!;

/** What bash's completion offers for `words` (the last one is being completed), with `script` sourced. */
function complete(script: string, words: string[]): string[] {
  const file = join(mkdtempSync(join(SCRATCH, "completion-")), "netctx.bash");
  writeFileSync(file, script);
  const r = spawnSync(
    "bash",
    [
      "-c",
      `source ${file}; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _netctx; printf '%s\\n' "\${COMPREPLY[@]}"`,
      "-",
      ...words,
    ],
    { encoding: "utf8" },
  );
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split("\n").filter(Boolean);
}

test("completion bash parses, and completes commands, subcommands, options and help topics", () => {
  const script = netctxOk("completion", "bash");
  const file = join(SCRATCH, "netctx.bash");
  writeFileSync(file, script);
  const parsed = spawnSync("bash", ["-n", file], { encoding: "utf8" });
  assert.equal(parsed.status, 0, parsed.stderr);
  assert.deepEqual(complete(script, ["netctx", "net"]), ["network"]);
  assert.deepEqual(complete(script, ["netctx", "network", "cr"]), ["create"]);
  assert.deepEqual(complete(script, ["netctx", "--state-dir", "/tmp", "network", "insp"]), ["inspect"]);
  assert.deepEqual(complete(script, ["netctx", "create", "web", "--le"]), ["--level"]);
  assert.deepEqual(complete(script, ["netctx", "help", "network", "disc"]), ["disconnect"]);
  assert.deepEqual(complete(script, ["netctx", "compl"]), ["completion"]);
});

test("a command added to the tree later is completed with no change to the generator", () => {
  const program = buildProgram();
  program.command("zz-later").description("added by a later change").option("--zz-flag", "its option");
  assert.deepEqual(complete(bashCompletion(program), ["netctx", "zz-"]), ["zz-later"]);
  assert.deepEqual(complete(bashCompletion(program), ["netctx", "zz-later", "--zz"]), ["--zz-flag"]);
});

test("completion zsh and fish: their shells parse and load the scripts, fish completes; an unknown shell is one error line", (t) => {
  for (const shell of ["zsh", "fish"]) {
    const script = netctxOk("completion", shell);
    assert.match(script, /\bnetwork\b/);
    if (spawnSync("sh", ["-c", `command -v ${shell}`]).status !== 0) {
      t.diagnostic(`${shell} is not installed (scripts/setup.sh installs it): its script is not parsed here`);
      continue;
    }
    const file = join(SCRATCH, `netctx.${shell}`);
    writeFileSync(file, script);
    const parsed = spawnSync(shell, ["-n", file], { encoding: "utf8" });
    assert.equal(parsed.status, 0, `${shell}: ${parsed.stderr}`);
    // Loaded into a fresh shell: no error (zsh needs its completion system up first; the script starts it).
    const check = shell === "fish" ? `source ${file}; complete -C 'netctx net'` : `source ${file}`;
    const loaded = spawnSync(shell, ["-c", check], {
      encoding: "utf8",
      env: { ...process.env, HOME: SCRATCH },
    });
    assert.equal(loaded.status, 0, `${shell}: ${loaded.stderr}`);
    assert.equal(loaded.stderr, "", shell);
    if (shell === "fish") assert.match(loaded.stdout, /^network\tmanage networks$/m);
  }
  const bad = netctx("completion", "tcsh");
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr, 'error: shell: "tcsh" is not one of bash, zsh, fish\n');
});

test("help TOPIC prints what TOPIC --help prints, for every command; an unknown topic is one error line", async () => {
  // [] first: `netctx help` is `netctx --help`.
  const paths = commandPaths(buildProgram()).map((p) => p.path);
  assert.ok(paths.some((p) => p.join(" ") === "network create"));
  const helps = await netctxParallel(paths.map((p) => ["help", ...p]));
  const own = await netctxParallel(paths.map((p) => [...p, "--help"]));
  for (const [i, p] of paths.entries()) {
    assert.equal(helps[i]!.code, 0, `help ${p.join(" ")}: ${helps[i]!.stderr}`);
    assert.equal(helps[i]!.stdout, own[i]!.stdout, `help ${p.join(" ")}`);
  }
  for (const topic of [["nosuch"], ["network", "nosuch"]]) {
    const r = netctx("help", ...topic);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.match(
      r.stderr,
      new RegExp(`^error: topic: no command "${topic.join(" ")}"; the topics here are: [^\\n]+\\n$`),
    );
  }
  const man = netctxOk("help", "--man");
  assert.match(man, /^\.TH NETCTX 1 /);
  for (const p of paths.slice(1))
    assert.ok(man.includes(`.SS netctx ${p.join(" ").replace(/-/g, "\\-")}`), p.join(" "));
});

/** Leaf commands that print no result to take as JSON, and why. */
const NO_JSON: Record<string, string> = {
  serve: "runs the engine; its output is a log of requests",
  exec: "the output is the command's own",
  demo: "a narrated walk through a throwaway scene; its verdict is the exit status",
  "state export": "prints JSON only",
  completion: "prints a shell script",
  help: "prints a help page or a man page",
};

function leaves(command: Command, path: string[] = []): { path: string; command: Command }[] {
  if (!command.commands.length) return [{ path: path.join(" "), command }];
  return command.commands.flatMap((c) => leaves(c, [...path, c.name()]));
}

test("every command that prints takes --json", () => {
  const missing = leaves(buildProgram())
    .filter(({ path, command }) => !(path in NO_JSON) && !command.options.some((o) => o.long === "--json"))
    .map(({ path }) => path);
  assert.deepEqual(missing, []);
});

test("--json of rm, network rm, policy rm, cni install, apply and destroy is JSON", () => {
  netctxOk("network", "create", "jn", "--driver", "host", "--subnet", "10.94.0.0/24");
  netctxOk("create", "jc", "--level", "socket", "--network", "jn");
  netctxOk("policy", "add", "jp", "--to", "app=x", "--from", "app=y");
  assert.deepEqual(JSON.parse(netctxOk("policy", "rm", "jp", "--json")), { removed: ["jp"] });
  const rm = netctx("rm", "jc", "ghost", "--json");
  assert.equal(rm.code, 1);
  assert.deepEqual(JSON.parse(rm.stdout), { removed: ["jc"] });
  assert.equal(rm.stderr, 'error: context "ghost" does not exist\n');
  assert.deepEqual(JSON.parse(netctxOk("network", "rm", "jn", "--json")), { removed: ["jn"] });
  const dir = join(SCRATCH, "cni-bin");
  assert.deepEqual(JSON.parse(netctxOk("cni", "install", dir, "--json")), { installed: join(dir, "netctx") });
  const scene = join(SCRATCH, "json-scene.yaml");
  writeFileSync(scene, "name: js\nnetworks:\n  - { name: jsn, driver: host, subnets: [10.95.0.0/24] }\n");
  assert.ok(JSON.parse(netctxOk("apply", scene, "--json")).lines.some((l: string) => /network jsn/.test(l)));
  assert.deepEqual(JSON.parse(netctxOk("destroy", scene, "--json")), {
    lines: ['scene "js" will remove: network jsn', "removed network jsn"],
  });
});

const NOW = { NETCTX_PROGRESS_AFTER_MS: "0" };

function withEnv(args: string[], env: Record<string, string>) {
  const r = spawnSync(NETCTX, args, { encoding: "utf8", env: { ...process.env, ...env }, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("gc: no progress within 2 s; past them plain lines on stderr, a bar on a terminal, nothing with --json", () => {
  netctxOk("network", "create", "gcn", "--driver", "host", "--subnet", "10.96.0.0/24");
  const quick = withEnv(["gc"], {});
  assert.equal(quick.stderr, "", "a gc under 2 s prints what it always printed");
  const slow = withEnv(["gc"], NOW);
  assert.equal(slow.code, 0, slow.stderr);
  assert.equal(slow.stdout, quick.stdout, "stdout is the command's own");
  assert.match(slow.stderr, /^gc: \[1\/4\] records: /m);
  assert.match(slow.stderr, /^gc: \[4\/4\] kernel and firewall: /m);
  const json = withEnv(["gc", "--json"], NOW);
  assert.equal(json.stderr, "");
  assert.equal(JSON.parse(json.stdout).dryRun, false);
  // A terminal: `script` gives the command one; the bar is drawn with cli-progress's blocks.
  const tty = spawnSync("script", ["-qfec", `${NETCTX} gc`, "/dev/null"], {
    encoding: "utf8",
    env: { ...process.env, ...NOW },
  });
  assert.equal(tty.status, 0, tty.stdout);
  assert.match(tty.stdout, /gc [\u2588\u2591]+ \d\/4/);
  netctxOk("network", "rm", "gcn");
});

test("destroy and audit report progress past 2 s on stderr; their output stays the same", () => {
  const scene = join(SCRATCH, "progress-scene.yaml");
  writeFileSync(
    scene,
    "name: ps\nnetworks:\n  - { name: psn, driver: bridge, subnets: [10.97.0.0/24] }\ncontexts:\n  - { name: psa, level: l2, networks: [psn] }\n",
  );
  netctxOk("apply", scene);
  const audit = withEnv(["audit", "psa"], NOW);
  assert.match(audit.stderr, /^audit: \[1\/2\] psa: probes sent$/m);
  assert.match(audit.stderr, /^audit: \[2\/2\] psa: what arrived read$/m);
  assert.match(audit.stdout, /psa/);
  assert.equal(withEnv(["audit", "psa", "--json"], NOW).stderr, "");
  const destroy = withEnv(["destroy", scene], NOW);
  assert.equal(destroy.code, 0, destroy.stderr);
  assert.match(destroy.stderr, /^destroy: \[1\/2\] remove context psa/m);
  assert.match(destroy.stdout, /^removed context psa$/m);
});
