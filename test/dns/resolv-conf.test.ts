/**
 * `netctx exec` gives an l2 context its own /etc/resolv.conf (its gateway) whatever the host keeps there: a
 * systemd-resolved style symlink into /run, a symlink to nothing, or no file at all. The context's process reads its
 * file and resolves a context name through it with glibc; the host's file, link and link target stay as they were.
 *
 * The host's /etc here is a copy on a tmpfs mounted in this test file's own mount namespace (the runner's sandbox),
 * and /run/systemd a tmpfs of the same namespace: the machine's /etc and /run are never written.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { after, before, beforeEach, test } from "node:test";
import { insideSandbox } from "../../src/sandbox.ts";
import { execScript, netctx, netctxJson, netctxOk, type RunningEngine, startEngine } from "../utils/cli.ts";
import { contextNetns, inNetns } from "../utils/netns.ts";
import { sleep } from "../utils/wait.ts";

const scratch = process.env.NETCTX_TEST_SCRATCH ?? "/tmp";
const STUB_DIR = "/run/systemd/resolve";
const STUB_FILE = `${STUB_DIR}/stub-resolv.conf`;
const STUB_TEXT = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan.example\n";
const GATEWAY = "10.66.0.1";

let engine: RunningEngine;

function mount(...args: string[]): void {
  const r = spawnSync("mount", args, { encoding: "utf8" });
  assert.equal(r.status, 0, `mount ${args.join(" ")}: ${r.stderr}`);
}

/** What the host has at /etc/resolv.conf: a symlink's target, a file's text, or nothing. */
function hostResolvConf(): { link?: string; text?: string } {
  const path = "/etc/resolv.conf";
  let link: string | undefined;
  try {
    if (lstatSync(path).isSymbolicLink()) link = readlinkSync(path);
  } catch {
    return {};
  }
  return {
    ...(link !== undefined ? { link } : {}),
    ...(existsSync(path) ? { text: readFileSync(path, "utf8") } : {}),
  };
}

/** The context's view: its resolv.conf, the stub path's text, a glibc lookup, and whether it may write the file. */
async function inContext() {
  const r = await execScript(
    "rc",
    `cat /etc/resolv.conf; echo "--stub"; cat ${STUB_FILE} 2>&1; echo "--getent"; getent hosts peer; ` +
      `echo "--passwd"; head -c 5 /etc/passwd; echo; (echo changed > /etc/resolv.conf) 2>/dev/null && echo writable; true`,
  );
  assert.equal(r.code, 0, r.stderr);
  const [conf = "", stub = "", getent = "", passwd = ""] = r.stdout.split(/--stub\n|--getent\n|--passwd\n/);
  return { conf, stub, getent, passwd, stderr: r.stderr };
}

const peerAddress = () => netctxJson<{ addresses: string[] }>("inspect", "peer").addresses[0]!.split("/")[0]!;

before(async () => {
  assert.ok(insideSandbox(process.env), "/etc and /run/systemd are only replaced inside the test sandbox");
  assert.ok(existsSync("/run/systemd"), "this test mounts a tmpfs on /run/systemd, which must exist");
  const etc = join(scratch, "etc");
  mkdirSync(etc);
  mount("-t", "tmpfs", "test-etc", etc);
  assert.equal(spawnSync("cp", ["-a", "/etc/.", etc]).status, 0);
  mount("--bind", etc, "/etc");
  mount("-t", "tmpfs", "test-run-systemd", "/run/systemd");
  engine = await startEngine();
  netctxOk("network", "create", "rcnet", "--subnet", "10.66.0.0/24");
  netctxOk("create", "rc", "--level", "l2", "--network", "rcnet");
  netctxOk("create", "peer", "--level", "l2", "--network", "rcnet");
  // The gateway's listener binds once the network is there: wait until it answers.
  for (let i = 0; i < 50; i++) {
    const [cmd, ...args] = inNetns(contextNetns("rc"), ["busybox", "nslookup", "peer", GATEWAY]);
    if (spawnSync(cmd!, args, { timeout: 5000 }).status === 0) break;
    await sleep(100);
  }
});

after(async () => {
  netctx("rm", "rc", "peer");
  await engine?.stop();
});

beforeEach(() => {
  rmSync("/etc/resolv.conf", { force: true });
  rmSync(STUB_DIR, { recursive: true, force: true });
});

/** The context's file: its gateway, the network's domain first in the search, the host's options kept. */
function assertContextsFile(conf: string, hostSearch = "", hostOptions: string[] = []): void {
  assert.match(conf, new RegExp(`^nameserver ${GATEWAY.replace(/\./g, "\\.")}$`, "m"), conf);
  assert.match(
    conf,
    new RegExp(`^search rcnet\\.netctx${hostSearch ? ` ${hostSearch.replace(/\./g, "\\.")}` : ""}$`, "m"),
  );
  for (const o of hostOptions) assert.match(conf, new RegExp(`^options ${o}$`, "m"));
  assert.doesNotMatch(conf, /127\.0\.0\.53/, "the host's loopback resolver is not listed");
}

test("a systemd-resolved symlink into /run: the context reads its file by both paths, the host's target is untouched", async () => {
  mkdirSync(STUB_DIR, { recursive: true });
  writeFileSync(STUB_FILE, STUB_TEXT);
  symlinkSync(STUB_FILE, "/etc/resolv.conf");
  const seen = await inContext();
  assertContextsFile(seen.conf, "lan.example", ["edns0 trust-ad"]);
  assert.equal(seen.stub, seen.conf, "the link's target shows the context's file too");
  assert.match(seen.getent, new RegExp(`^${peerAddress().replace(/\./g, "\\.")}\\s+peer`, "m"), seen.getent);
  assert.doesNotMatch(seen.passwd, /writable/);
  assert.deepEqual(hostResolvConf(), { link: STUB_FILE, text: STUB_TEXT });
});

test("a symlink to nothing: the context still gets its file, and the link's target stays missing", async () => {
  symlinkSync(STUB_FILE, "/etc/resolv.conf");
  const seen = await inContext();
  assertContextsFile(seen.conf);
  assert.match(seen.getent, new RegExp(`^${peerAddress().replace(/\./g, "\\.")}\\s+peer`, "m"), seen.getent);
  assert.doesNotMatch(seen.stderr, /warning/, seen.stderr);
  assert.doesNotMatch(seen.passwd, /writable/, "read-only");
  assert.deepEqual(hostResolvConf(), { link: STUB_FILE });
  assert.ok(!existsSync(STUB_DIR), "nothing was made where the link points");
});

test("no /etc/resolv.conf: the context gets its file over the rest of /etc, and the host keeps having none", async () => {
  const seen = await inContext();
  assertContextsFile(seen.conf);
  assert.match(seen.getent, new RegExp(`^${peerAddress().replace(/\./g, "\\.")}\\s+peer`, "m"), seen.getent);
  assert.match(seen.passwd, /^root:/, "the rest of the host's /etc is still there");
  assert.doesNotMatch(seen.passwd, /writable/, "read-only");
  assert.deepEqual(hostResolvConf(), {});
  assert.ok(!existsSync("/etc/resolv.conf"));
});

test("a plain file: covered, and the host's text unchanged", async () => {
  writeFileSync("/etc/resolv.conf", STUB_TEXT);
  const seen = await inContext();
  assertContextsFile(seen.conf, "lan.example", ["edns0 trust-ad"]);
  assert.match(seen.getent, new RegExp(`^${peerAddress().replace(/\./g, "\\.")}\\s+peer`, "m"), seen.getent);
  assert.deepEqual(hostResolvConf(), { text: STUB_TEXT });
});
