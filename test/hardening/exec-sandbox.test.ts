/**
 * Root inside a context, through `netctx exec`, tries the escapes of issue 15 that the exec sandbox closes
 * (src/exec/netctx-enter.c): leaving an l2 netns, reaching another context's processes (ptrace, pidfd_getfd,
 * signals), abstract unix sockets of the host and other contexts, sysctl and cgroup writes, new user namespaces,
 * the engine's API, AF_VSOCK, TIOCSTI. Each attack also runs outside the sandbox (as root on the host, or through
 * the bare `nsenter` that exec used to be) and must succeed there, so a refusal inside is the sandbox's doing.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { enterArgv } from "../../src/exec/enter.ts";
import { killSubtree } from "../../src/kernel/cgroup-kill.ts";
import { BASE_CAPABILITIES } from "../../src/levels/driver.ts";
import { commOf, procsOf } from "../utils/cgroup.ts";
import {
  bareView,
  NETCTX,
  netctx,
  netctxJson,
  netctxOk,
  type RunningEngine,
  startEngine,
} from "../utils/cli.ts";
import { ipj } from "../utils/kernel-oracle.ts";
import { startLines } from "../utils/line-process.ts";
import { contextNetns, inNetns } from "../utils/netns.ts";
import { waitFor } from "../utils/wait.ts";

const PY = "/usr/bin/python3";
const STATE = process.env.NETCTX_STATE_DIR!;
const SOCKET = join(STATE, "netctx.sock");

interface View {
  name: string;
  netns?: string;
  cgroup?: string;
  addresses: string[];
}

/** Python run inside a context through `netctx exec`; it prints one JSON value. */
function inside(context: string, code: string): Record<string, unknown> {
  const r = spawnSync(NETCTX, ["exec", context, "--", PY, "-c", code], { encoding: "utf8", timeout: 30_000 });
  assert.equal(r.status, 0, `exec ${context}: ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, unknown>;
}

/** The same Python as root on the host, or in a netns by bare nsenter (the old l2 exec). */
function outside(code: string, netns?: string): Record<string, unknown> {
  const argv = inNetns(netns, [PY, "-c", code]);
  const out = execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: 30_000 });
  return JSON.parse(out.trim().split("\n").pop()!) as Record<string, unknown>;
}

const PRELUDE = `
import ctypes, errno, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def en(): return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
def oserr(e): return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) and e.errno else str(e)
`;

let x: View;
let a: View;
let s2: View;
const started: ChildProcess[] = [];
const HOST_SECRET = `\0netctx-test-host-${process.pid}`;

/** The port of a process in s2 holding a listening socket on s2's address, with an abstract unix listener too. */
let s2Port = 0;
let s2HostPid = 0;

/**
 * A unix socket listener on the host until the test ends, `address` as Python source text ("\\0name" for an
 * abstract one). Python, not node: node binds an abstract name padded with NULs to the whole sun_path.
 */
async function unixListener(address: string): Promise<void> {
  const code = `import socket, sys\nu = socket.socket(socket.AF_UNIX); u.bind("${address}"); u.listen()\nprint("ok", flush=True); sys.stdin.read()`;
  const p = startLines([PY, "-c", code]);
  started.push(p.child);
  await p.next();
}

before(async () => {
  netctxOk(
    "network",
    "create",
    "hn",
    "--driver",
    "host",
    "--subnet",
    "10.61.0.0/24",
    "--subnet",
    "fd61::/64",
  );
  netctxOk(
    "network",
    "create",
    "br",
    "--driver",
    "bridge",
    "--subnet",
    "10.62.0.0/24",
    "--subnet",
    "fd62::/64",
  );
  for (const [name, level, net, extra] of [
    ["x", "l2", "br", []],
    ["y", "l2", "br", []],
    ["a", "socket", "hn", []],
    ["s2", "socket", "hn", []],
    ["b", "l3", "hn", ["--route", "default via 10.61.0.254"]],
  ] as const)
    netctxOk("create", name, "--level", level, "--network", net, ...extra);
  [x, a, s2] = ["x", "a", "s2"].map((n) => netctxJson<View>("inspect", n)) as [View, View, View];
  await unixListener(`\\0${HOST_SECRET.slice(1)}`);
  const s2Addr = s2.addresses[0]!.split("/")[0]!;
  const s2Holder = startLines([
    NETCTX,
    "exec",
    "s2",
    "--",
    PY,
    "-c",
    `import socket, sys
t = socket.socket(); t.bind(("${s2Addr}", 0)); t.listen()
u = socket.socket(socket.AF_UNIX); u.bind("\\0s2-secret"); u.listen()
print(t.getsockname()[1], flush=True); sys.stdin.read()`,
  ]);
  started.push(s2Holder.child);
  s2Port = Number(await s2Holder.next());
  // The python process in s2's cgroup, as the host numbers it (the sandbox's init and wrapper are there too).
  s2HostPid = procsOf(s2.cgroup!).find((pid) => commOf(pid)?.startsWith("python"))!;
  assert.ok(s2HostPid > 0, "s2's listener is in its cgroup");
});

after(async () => {
  for (const c of started) {
    c.stdin?.end();
    if (c.exitCode === null && c.signalCode === null) await new Promise((r) => c.once("exit", r));
  }
  netctx("rm", "x", "y", "a", "s2", "b");
});

describe("l2: root stays in its netns", () => {
  test("nsenter into a host process's netns and `ip -n` into another context are refused", () => {
    const target = process.pid; // in the host's netns
    const code = `${PRELUDE}
out = {}
try:
    fd = os.open("/proc/${target}/ns/net", os.O_RDONLY); out["open"] = "ok"
    out["setns"] = "ok" if libc.setns(fd, 0x40000000) == 0 else en()
except OSError as e:
    out["open"] = oserr(e)
out["ip-n"] = os.system("ip -n netctx-y addr add 10.62.0.200/24 dev eth0 2>/dev/null") == 0
try:
    out["root-setns"] = "ok" if libc.setns(os.open("/proc/1/ns/net", os.O_RDONLY), 0x40000000) == 0 else en()
except OSError as e:
    out["root-setns"] = oserr(e)
print(json.dumps(out))`;
    const got = inside("x", code);
    assert.notEqual(got.open, "ok", `the host's pid ${target} is not visible: ${JSON.stringify(got)}`);
    assert.equal(got["ip-n"], false);
    assert.notEqual(got["root-setns"], "ok");
    const yAddrs = JSON.stringify(ipj(["addr", "show", "dev", "eth0"], contextNetns("y")));
    assert.ok(!yAddrs.includes("10.62.0.200"), "y's addresses are untouched");
    // Control: the old exec (bare nsenter) does it.
    const old = outside(code, x.netns);
    assert.equal(old.setns, "ok", `control: ${JSON.stringify(old)}`);
    execFileSync("ip", ["-n", "netctx-y", "addr", "del", "10.62.0.200/24", "dev", "eth0"]);
  });

  test("l2 keeps what it needs in its own netns: addresses, routes, raw and packet sockets", () => {
    const got = inside(
      "x",
      `${PRELUDE}
ok = os.system("ip addr add 10.62.0.201/32 dev lo && ip route add 192.0.2.0/24 dev lo") == 0
socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
print(json.dumps({"ok": ok}))`,
    );
    assert.equal(got.ok, true);
  });
});

describe("shared-stack contexts cannot reach each other's processes", () => {
  const steal = (pid: number) => `${PRELUDE}
out = {}
pidfd = libc.syscall(434, ${pid}, 0)
if pidfd < 0:
    out["pidfd_open"] = en()
else:
    out["pidfd_open"] = "ok"
    for fd in range(3, 16):
        got = libc.syscall(438, pidfd, fd, 0)
        if got >= 0:
            s = socket.socket(fileno=got)
            if s.family == socket.AF_INET: out.setdefault("stolen", []).append("%s:%d" % s.getsockname()[:2])
# PTRACE_SEIZE: attaches without stopping the tracee; the tracer's exit detaches it.
out["ptrace"] = "ok" if libc.ptrace(0x4206, ${pid}, 0, 0) == 0 else en()
try:
    os.kill(${pid}, 0); out["kill"] = "ok"
except OSError as e:
    out["kill"] = oserr(e)
print(json.dumps(out))`;

  test("ptrace, pidfd_getfd and signals aimed at s2's process fail from a and from b", () => {
    for (const ctx of ["a", "b"]) {
      const got = inside(ctx, steal(s2HostPid));
      assert.equal(got.stolen, undefined, `${ctx} stole s2's sockets: ${JSON.stringify(got)}`);
      assert.notEqual(got.ptrace, "ok");
      assert.notEqual(got.kill, "ok");
    }
    // Control: root outside steals s2's listening socket.
    const control = outside(steal(s2HostPid));
    const s2Addr = s2.addresses[0]!.split("/")[0]!;
    assert.ok(
      (control.stolen as string[] | undefined)?.includes(`${s2Addr}:${s2Port}`),
      `control: ${JSON.stringify(control)}`,
    );
  });

  test("signals to a host process fail (kill, and CAP_KILL is gone)", () => {
    const victim = spawn("sleep", ["30"]);
    started.push(victim);
    const code = `${PRELUDE}
try:
    os.kill(${victim.pid}, 15); r = "ok"
except OSError as e:
    r = oserr(e)
caps = int([l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1], 16)
print(json.dumps({"kill": r, "cap_kill": bool(caps & (1 << 5))}))`;
    for (const ctx of ["a", "x"]) {
      const got = inside(ctx, code);
      assert.notEqual(got.kill, "ok");
      assert.equal(got.cap_kill, false);
    }
    assert.equal(victim.exitCode, null, "the host's process still runs");
    victim.kill();
  });

  test("SIGTERM to netctx exec reaches the command; nothing of it is left in the context", async () => {
    const exec = spawn(NETCTX, ["exec", "a", "--", "sleep", "60"], { stdio: "ignore" });
    started.push(exec);
    const sleeping = () => procsOf(a.cgroup!).some((pid) => commOf(pid) === "sleep");
    await waitFor(sleeping, 5000);
    assert.ok(sleeping(), "the command runs in a's cgroup");
    exec.kill("SIGTERM");
    const code = await new Promise<number | null>((resolve) => exec.once("exit", resolve));
    try {
      assert.equal(code, 128 + 15, "netctx exec returns the command's end: SIGTERM");
      await waitFor(() => procsOf(a.cgroup!).length === 0, 1000);
      assert.deepEqual(procsOf(a.cgroup!), [], "no process left in a");
    } finally {
      // A failed run leaves the sandbox waiting on sleep: it must not outlive the test.
      killSubtree(a.cgroup!);
    }
  });

  test("each exec has its own PID namespace: it sees its own processes only", () => {
    const got = inside(
      "a",
      `${PRELUDE}\nprint(json.dumps({"pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}))`,
    );
    assert.deepEqual(got.pids, [1, 2]);
  });
});

describe("abstract unix sockets stay inside a shared-stack context", () => {
  const connect = (name: string) => `${PRELUDE}
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("\\0${name.slice(1)}"); r = "ok"
except OSError as e:
    r = oserr(e)
print(json.dumps({"r": r}))`;

  test("a cannot connect to s2's @s2-secret nor the host's, but reaches its own", () => {
    for (const ctx of ["a", "b"]) {
      assert.equal(inside(ctx, connect("\0s2-secret")).r, "EPERM", `${ctx} -> s2`);
      assert.equal(inside(ctx, connect(HOST_SECRET)).r, "EPERM", `${ctx} -> host`);
    }
    const own = inside(
      "a",
      `${PRELUDE}
l = socket.socket(socket.AF_UNIX); l.bind("\\0a-own"); l.listen()
c = socket.socket(socket.AF_UNIX); c.connect("\\0a-own")
print(json.dumps({"r": "ok"}))`,
    );
    assert.equal(own.r, "ok", "its own abstract socket");
    // Control: root on the host reaches both.
    assert.equal(outside(connect("\0s2-secret")).r, "ok", "host -> s2");
    assert.equal(outside(connect(HOST_SECRET)).r, "ok", "host -> host");
  });
});

describe("sysctls, cgroups, kernel knobs and namespaces are out of reach", () => {
  const writes = `${PRELUDE}
out = {}
for key, path, value in [
    ("disable_ipv6", "/proc/sys/net/ipv6/conf/nc-hn/disable_ipv6", "1"),
    ("route_localnet", "/proc/sys/net/ipv4/conf/nc-br/route_localnet", "1"),
    ("core_pattern", "/proc/sys/kernel/core_pattern", "|/bin/false"),
]:
    try:
        with open(path, "w") as f: f.write(value)
        out[key] = "ok"
    except OSError as e:
        out[key] = oserr(e)
out["cgroups"] = [l.split()[1:3] for l in open("/proc/self/mounts") if l.split()[2] in ("cgroup", "cgroup2")]
out["userns"] = os.system("unshare -U -r -C -m true 2>/dev/null") == 0
try:
    socket.socket(40, socket.SOCK_STREAM); out["vsock"] = "ok"
except OSError as e:
    out["vsock"] = oserr(e)
import fcntl, termios
try:
    fcntl.ioctl(0, termios.TIOCSTI, b"x"); out["tiocsti"] = "ok"
except OSError as e:
    out["tiocsti"] = oserr(e)
print(json.dumps(out))`;

  test("/proc/sys (net and kernel) and cgroupfs are read-only; no user namespace, AF_VSOCK or TIOCSTI", () => {
    for (const ctx of ["a", "b", "x"]) {
      const got = inside(ctx, writes);
      for (const key of ["disable_ipv6", "route_localnet", "core_pattern"])
        assert.ok(["EROFS", "ENOENT"].includes(String(got[key])), `${ctx} ${key}: ${got[key]}`);
      assert.deepEqual(got.cgroups, [["/sys/fs/cgroup", "cgroup2"]], `${ctx}: one cgroup2 mount`);
      assert.equal(got.userns, false);
      assert.equal(got.vsock, "EPERM");
      // A pipe answers ENOTTY to TIOCSTI; EPERM is the filter's.
      assert.equal(got.tiocsti, "EPERM");
    }
    const mounts = readFileSync("/proc/self/mounts", "utf8");
    assert.match(mounts, / cgroup2 rw/, "outside, cgroupfs stays writable");
    assert.equal(readFileSync("/proc/sys/net/ipv6/conf/nc-hn/disable_ipv6", "utf8").trim(), "0");
    // s2's IPv6 address is still on the network's device.
    const v6 = s2.addresses.find((c) => c.includes(":"))!.split("/")[0]!;
    assert.ok(execFileSync("ip", ["-j", "addr", "show", "dev", "nc-hn"], { encoding: "utf8" }).includes(v6));
  });
});

describe("the host's file system", () => {
  const dir = `/var/lib/netctx-test-fs-${process.pid}`;
  const sock = "/run/netctx/fs-test.sock";
  const shm = `/dev/shm/netctx-test-fs-${process.pid}`;
  before(async () => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(shm, "a host process's shared memory");
    // A host daemon's socket under /run, as dbus, systemd and container runtimes keep theirs.
    await unixListener(sock);
  });
  after(() => {
    // What a failed run (a sandbox without its read-only view) may have left on the host.
    for (const path of [dir, shm, "/etc/netctx-test-evil", `/tmp/netctx-test-fs-${process.pid}`])
      rmSync(path, { recursive: true, force: true });
  });

  const attempt = `${PRELUDE}
out = {}
def write(path):
    try:
        with open(path, "w") as f: f.write("x")
        return "ok"
    except OSError as e:
        return oserr(e)
out["etc"] = write("/etc/netctx-test-evil")
out["dir"] = write("${dir}/inside")
out["tmp"] = write("/tmp/netctx-test-fs-${process.pid}")
import stat
out["block"] = sorted(n for n in os.listdir("/dev") if stat.S_ISBLK(os.stat("/dev/" + n).st_mode))
try:
    os.chmod("/tmp/netctx-test-fs-${process.pid}", 0o4755); out["suid"] = "ok"
except OSError as e:
    out["suid"] = oserr(e)
out["shm"] = os.path.exists("/dev/shm/netctx-test-fs-${process.pid}")
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("${sock}"); out["run"] = "ok"
except OSError as e:
    out["run"] = oserr(e)
print(json.dumps(out))`;

  test("is read-only but for /tmp and --rw paths; no setuid files, disks, host shm or daemons' sockets", () => {
    for (const ctx of ["a", "x"]) {
      const got = inside(ctx, attempt);
      assert.equal(got.etc, "EROFS", `${ctx}: /etc`);
      assert.equal(got.dir, "EROFS", `${ctx}: a host directory`);
      assert.equal(got.tmp, "ok", `${ctx}: /tmp stays writable`);
      assert.deepEqual(got.block, [], `${ctx}: no block devices`);
      assert.equal(got.run, "ENOENT", `${ctx}: /run is empty`);
      assert.equal(got.suid, "EPERM", `${ctx}: no setuid file in the shared /tmp`);
      assert.equal(got.shm, false, `${ctx}: /dev/shm of its own`);
      const r = spawnSync(NETCTX, ["exec", "--rw", dir, ctx, "--", PY, "-c", attempt], { encoding: "utf8" });
      assert.equal((JSON.parse(r.stdout) as Record<string, unknown>).dir, "ok", `${ctx} --rw: ${r.stderr}`);
    }
    // Control: outside, root writes there and reaches the socket.
    const control = outside(attempt);
    assert.equal(control.dir, "ok");
    assert.equal(control.run, "ok");
    assert.equal(control.suid, "ok");
    assert.equal(control.shm, true);
  });

  test("--rw wants an existing absolute path", () => {
    for (const [path, why] of [
      ["relative", /rw: "relative" is not an absolute path/],
      ["/a/../etc", /rw: .* \.\. parts/],
      ["/", /rw: \/ cannot be writable/],
      [`${dir}/missing`, /rw: .*missing does not exist/],
    ] as const) {
      const r = netctx("exec", "--rw", path, "a", "--", "true");
      assert.equal(r.code, 125, "netctx exec's own failure (issue 17)");
      assert.match(r.stderr, why);
    }
  });
});

describe("the engine's API", () => {
  let engine: RunningEngine;
  before(async () => {
    engine = await startEngine();
  });
  after(() => engine.stop());

  const ask = `${PRELUDE}
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(${JSON.stringify(SOCKET)})
    body = json.dumps({"name": "evil", "driver": "bridge", "subnets": ["10.66.0.0/24"]}).encode()
    s.sendall(b"POST /v1/networks HTTP/1.0\\r\\ncontent-type: application/json\\r\\ncontent-length: %d\\r\\n\\r\\n%s" % (len(body), body))
    r = s.recv(200).decode().split("\\r\\n")[0]
except OSError as e:
    r = oserr(e)
print(json.dumps({"r": r}))`;

  test("from inside, the socket is hidden and `netctx network create` changes nothing", () => {
    for (const ctx of ["a", "x"]) {
      assert.ok(!String(inside(ctx, ask).r).startsWith("HTTP"), `${ctx} reached the engine`);
      const r = spawnSync(
        NETCTX,
        ["exec", ctx, "--", NETCTX, "network", "create", "evil", "--subnet", "10.66.0.0/24"],
        {
          encoding: "utf8",
        },
      );
      assert.notEqual(r.status, 0);
    }
    assert.ok(!netctxOk("network", "ls").includes("evil"));
    assert.equal(spawnSync("ip", ["link", "show", "nc-evil"]).status, 1, "no nc-evil on the host");
  });

  test("a writable path that holds the state directory does not bring it back", () => {
    const holder = dirname(STATE);
    const look = `import json, os\nprint(json.dumps({"state": sorted(os.listdir(${JSON.stringify(STATE)}))}))`;
    for (const ctx of ["a", "x"]) {
      const r = spawnSync(NETCTX, ["exec", "--rw", holder, ctx, "--", PY, "-c", look], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout).state, [], `${ctx}: the state directory is covered`);
    }
    assert.ok(readdirSync(STATE).length > 0, "outside, the state directory has the store");
  });

  test("a caller that reaches the socket from a context is refused by its credentials (403)", () => {
    // The sandbox without its hiding (the state directory, under the host's /tmp here, kept in view), in a's cgroup;
    // bare nsenter into x's netns; a PID namespace alone.
    const shared = { keepCaps: BASE_CAPABILITIES, families: ["unix", "inet", "inet6"] as const };
    const callers = [
      enterArgv(
        { ...shared, cgroup: a.cgroup!, scopeAbstractUnix: true },
        { ...bareView(), writable: [STATE] },
        [PY, "-c", ask],
      ),
      inNetns(x.netns!, [PY, "-c", ask]),
      ["unshare", "--pid", "--fork", "--", PY, "-c", ask],
    ];
    for (const argv of callers) {
      const out = execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
      assert.match(out, /HTTP\/1\.[01] 403/, `${argv[0]}: ${out}`);
    }
    assert.ok(!netctxOk("network", "ls").includes("evil"));
    // Control: the same request from the host is answered (and the network made, then removed).
    assert.match(JSON.stringify(outside(ask)), /HTTP\/1\.[01] 201/);
    netctxOk("network", "rm", "evil");
  });
});
