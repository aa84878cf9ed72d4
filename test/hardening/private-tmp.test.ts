/**
 * Every context has a /tmp and /var/tmp of its own (netctx-enter.c --tmp, state/private-tmp.ts). The host's /tmp is
 * every host process's: from there a context would reach a host daemon's pathname socket (tmux keeps its server's in
 * /tmp/tmux-UID; a connect needs no write access to the directory, and root's DAC override ignores the socket's
 * mode), plant files a host process trusts, or read another context's. Each attack is checked against a control
 * that shows it would work: the host's socket answers the host, the writer's file is there for the writer.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { NETCTX, netctxOk } from "../utils/cli.ts";
import { startLines } from "../utils/line-process.ts";

const PY = "/usr/bin/python3";
const STATE = process.env.NETCTX_STATE_DIR!;
const LEVELS = [
  ["l2", "l2", "br"],
  ["l3", "l3", "hn"],
  ["so", "socket", "hn"],
  ["so2", "socket", "hn"],
] as const;
const HOST_DIR = `/tmp/netctx-test-tmux-${process.pid}`;
const HOST_SOCKET = join(HOST_DIR, "default");
const HOST_FILE = `/tmp/netctx-test-host-file-${process.pid}`;
const started: ChildProcess[] = [];

function inside(context: string, code: string): Record<string, string> {
  const r = spawnSync(NETCTX, ["exec", context, "--", PY, "-c", `import json, os, socket\n${code}`], {
    encoding: "utf8",
    timeout: 30_000,
  });
  assert.equal(r.status, 0, `exec ${context}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, string>;
}

const CONNECT = `
def attempt(f):
    try:
        return f()
    except OSError as e:
        return os.strerror(e.errno) if e.errno else str(e)
def ask():
    s = socket.socket(socket.AF_UNIX)
    s.connect(${JSON.stringify(HOST_SOCKET)})
    return s.recv(64).decode()
`;

before(async () => {
  netctxOk("network", "create", "hn", "--driver", "host", "--subnet", "10.63.0.0/24");
  netctxOk("network", "create", "br", "--driver", "bridge", "--subnet", "10.64.0.0/24");
  for (const [name, level, net] of LEVELS) netctxOk("create", name, "--level", level, "--network", net);
  // A host daemon's socket in /tmp, root's, 0700 directory as tmux makes it; it greets whoever connects.
  mkdirSync(HOST_DIR, { mode: 0o700 });
  const server = startLines([
    PY,
    "-c",
    `import socket, sys, threading
s = socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(HOST_SOCKET)}); s.listen()
def serve():
    while True:
        c, _ = s.accept(); c.sendall(b"host-daemon"); c.close()
threading.Thread(target=serve, daemon=True).start()
print("ok", flush=True); sys.stdin.read()`,
  ]);
  started.push(server.child);
  await server.next();
  writeFileSync(HOST_FILE, "host secret");
});

after(() => {
  for (const c of started) c.kill();
  rmSync(HOST_DIR, { recursive: true, force: true });
  rmSync(HOST_FILE, { force: true });
  // Only there when the rule under test is broken (a check by hand): never left on the machine.
  for (const dir of ["/tmp", "/var/tmp"]) rmSync(`${dir}/mine-${process.pid}`, { force: true });
});

test("no level reaches a host daemon's socket or reads a host file in /tmp", () => {
  const control = spawnSync(PY, ["-c", `import os, socket\n${CONNECT}\nprint(attempt(ask))`], {
    encoding: "utf8",
  });
  assert.equal(control.stdout.trim(), "host-daemon", "the host's socket answers the host");
  for (const [name] of LEVELS) {
    const got = inside(
      name,
      `${CONNECT}\nprint(json.dumps({"socket": attempt(ask), "file": attempt(lambda: open(${JSON.stringify(HOST_FILE)}).read())}))`,
    );
    assert.equal(got.socket, "No such file or directory", `${name}: the host's socket is not in its /tmp`);
    assert.equal(got.file, "No such file or directory", `${name}: the host's file is not in its /tmp`);
  }
});

test("a context's /tmp and /var/tmp are its own: kept between its execs, unseen by others and by the host's", () => {
  for (const [name] of LEVELS)
    inside(
      name,
      `for d in ("/tmp", "/var/tmp"):
    open(d + "/mine-${process.pid}", "w").write(${JSON.stringify("")} + "${name}")
print(json.dumps({}))`,
    );
  for (const [name] of LEVELS) {
    const got = inside(
      name,
      `print(json.dumps({d: open(d + "/mine-${process.pid}").read() for d in ("/tmp", "/var/tmp")} | {"mode": oct(os.stat("/tmp").st_mode & 0o7777)}))`,
    );
    assert.deepEqual(
      got,
      { "/tmp": name, "/var/tmp": name, mode: "0o1777" },
      `${name} reads its own files back`,
    );
  }
  assert.ok(
    !existsSync(`/tmp/mine-${process.pid}`) && !existsSync(`/var/tmp/mine-${process.pid}`),
    "nothing landed in the host's",
  );
  assert.equal(
    readFileSync(join(STATE, "tmp", "so", "tmp", `mine-${process.pid}`), "utf8"),
    "so",
    "kept under the state dir",
  );
});

test("rm takes a context's /tmp with it; gc removes one no context owns", () => {
  inside("so2", `open("/tmp/left", "w").write("x")\nprint(json.dumps({}))`);
  assert.ok(existsSync(join(STATE, "tmp", "so2")));
  netctxOk("rm", "so2");
  assert.ok(!existsSync(join(STATE, "tmp", "so2")), "rm removed it");
  mkdirSync(join(STATE, "tmp", "ghost", "tmp"), { recursive: true });
  const out = netctxOk("gc");
  assert.match(out, /private \/tmp of ghost/);
  assert.ok(!existsSync(join(STATE, "tmp", "ghost")), "gc removed the orphan");
  assert.ok(existsSync(join(STATE, "tmp", "so")), "and kept a living context's");
});

test("--ro keeps a host path under /tmp in view, read-only; a bad one is refused before anything runs", () => {
  const got = spawnSync(
    NETCTX,
    [
      "exec",
      "--ro",
      HOST_FILE,
      "so",
      "--",
      PY,
      "-c",
      `import json, os
def attempt(f):
    try: return f()
    except OSError as e: return os.strerror(e.errno)
print(json.dumps({"read": attempt(lambda: open(${JSON.stringify(HOST_FILE)}).read()),
  "write": attempt(lambda: open(${JSON.stringify(HOST_FILE)}, "a").write("x"))}))`,
    ],
    { encoding: "utf8" },
  );
  assert.equal(got.status, 0, got.stderr);
  assert.deepEqual(JSON.parse(got.stdout), { read: "host secret", write: "Read-only file system" });
  assert.equal(readFileSync(HOST_FILE, "utf8"), "host secret");
  for (const [path, why] of [
    ["relative", /^error: ro: "relative" is not an absolute path/m],
    ["/nonexistent-netctx-path", /^error: ro: \/nonexistent-netctx-path does not exist/m],
  ] as const) {
    const r = spawnSync(NETCTX, ["exec", "--ro", path, "so", "--", "true"], { encoding: "utf8" });
    assert.equal(r.status, 125);
    assert.match(r.stderr, why);
  }
});
