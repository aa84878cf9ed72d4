/**
 * Issue 15, escape 7: an l3 context with a default route of its own must not reach another network by naming that
 * network's device. Scene: a host network hn with two upstream routers, an l3 context b whose table sends
 * everything to one of them, an l3 context c without a default route, a socket-level context s; a bridge network br
 * with an l2 context x listening on TCP and UDP. Without the device guard, a socket of b given nc-br (by
 * SO_BINDTODEVICE and its kin, or per datagram by IP_PKTINFO, a scope id, a broadcast) misses every route of b's
 * table, the fib rules go on to the main table (IPv4 even sends on-link when every table misses), and x hears b.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { detachProgram, openCgroup, progFdById, queryPrograms, withFd } from "../../src/kernel/bpf/attach.ts";
import { querySocketPolicy } from "../../src/kernel/bpf/socket-policy.ts";
import { closeFd } from "../../src/kernel/bpf/syscall.ts";
import { inCgroupArgv } from "../utils/cgroup.ts";
import { NETCTX, netctxJson, netctxOk } from "../utils/cli.ts";
import { type IpLink, ipj, ipLink } from "../utils/kernel-oracle.ts";
import { startLines } from "../utils/line-process.ts";
import { contextNetns } from "../utils/netns.ts";
import { must, sh } from "../utils/shell.ts";
import { startUpstream, type Upstream } from "../utils/upstream.ts";
import { sleep } from "../utils/wait.ts";

const PORT = 7100;
const FAR4 = "198.51.100.71";
const FAR6 = "2001:db8:71::71";
const PYTHON = "/usr/bin/python3";

const SOL_IP = 0;
const SOL_SOCKET = 1;
const SOL_IPV6 = 41;
const SO_BINDTODEVICE = 25;
const SO_BINDTOIFINDEX = 62;
const IP_PKTINFO = 8;
const IP_MULTICAST_IF = 32;
const IP_UNICAST_IF = 50;
const IPV6_MULTICAST_IF = 17;
const IPV6_PKTINFO = 50;
const IPV6_UNICAST_IF = 76;

/** One socket per op: options (hex values), then a TCP connect that reads a line, or one datagram (sendmsg). */
interface SockOp {
  family: 4 | 6;
  tcp?: boolean;
  broadcast?: boolean;
  opts?: [number, number, string][];
  connect?: [string, number];
  /** host, port and, for IPv6, a scope id. */
  send?: [string, number, number?];
  cmsg?: [number, number, string][];
  payload?: string;
}
interface SockResult {
  ok: boolean;
  step?: string;
  errno?: string;
  data?: string;
}

const SOCK_PY = `
import errno, json, socket, sys
def run(op):
    fam = socket.AF_INET6 if op["family"] == 6 else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM if op.get("tcp") else socket.SOCK_DGRAM)
    s.settimeout(2)
    step = "socket"
    try:
        if op.get("broadcast"): s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        for level, name, value in op.get("opts", []):
            step = "setsockopt(%d, %d)" % (level, name)
            s.setsockopt(level, name, bytes.fromhex(value))
        if op.get("connect"):
            step = "connect"
            s.connect(tuple(op["connect"]))
            return {"ok": True, "data": s.recv(200).decode().strip()}
        if op.get("send"):
            host, port = op["send"][0], op["send"][1]
            addr = (host, port) if fam == socket.AF_INET else (host, port, 0, op["send"][2] if len(op["send"]) > 2 else 0)
            step = "sendmsg"
            s.sendmsg([op.get("payload", "-").encode()], [(l, t, bytes.fromhex(v)) for l, t, v in op.get("cmsg", [])], 0, addr)
        return {"ok": True}
    except OSError as e:
        return {"ok": False, "step": step, "errno": errno.errorcode.get(e.errno, str(e.errno)) if e.errno else "timeout"}
    finally:
        s.close()
print(json.dumps([run(op) for op in json.loads(sys.argv[1])]))
`;

/** x's listener: TCP answers "x", every datagram is printed as "udp PAYLOAD FROM"; ends when stdin closes. */
const LISTEN_PY = String.raw`
import select, socket, sys
port = int(sys.argv[1]); socks = []
for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(fam, kind)
        if fam == socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        if kind == socket.SOCK_STREAM: s.listen(16)
        socks.append(s)
print("up", flush=True)
while True:
    r, _, _ = select.select([sys.stdin] + socks, [], [])
    if sys.stdin in r and not sys.stdin.readline(): break
    for s in r:
        if s is sys.stdin: continue
        if s.type == socket.SOCK_STREAM:
            c, peer = s.accept(); c.sendall(b"x\n"); c.close(); print("tcp", peer[0], flush=True)
        else:
            data, peer = s.recvfrom(200); print("udp", data.decode(), peer[0], flush=True)
`;

function sockOps(context: string, ops: SockOp[]): SockResult[] {
  const out = execFileSync(NETCTX, ["exec", context, "--", PYTHON, "-c", SOCK_PY, JSON.stringify(ops)], {
    encoding: "utf8",
    timeout: 30_000,
  });
  return JSON.parse(out) as SockResult[];
}

const hex = {
  name: (n: string) => Buffer.from(n).toString("hex"),
  /** A host-order int, as SO_BINDTOIFINDEX, IPV6_MULTICAST_IF and struct in6_pktinfo's ifindex. */
  int: (v: number) => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return b.toString("hex");
  },
  /** Network byte order, as IP_UNICAST_IF and IPV6_UNICAST_IF take the ifindex. */
  be: (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    return b.toString("hex");
  },
  ip4: (a: string) => Buffer.from(a.split(".").map(Number)).toString("hex"),
};
/** struct in_pktinfo {ifindex, spec_dst, addr} and struct in6_pktinfo {addr, ifindex}. */
const pktinfo4 = (ifindex: number) => hex.int(ifindex) + "00".repeat(8);
const pktinfo6 = (ifindex: number) => "00".repeat(16) + hex.int(ifindex);

// Not /sys/class/net: sysfs there is the machine's, mounted outside the test's network namespace.
const ifindex = (name: string) => ipLink<IpLink>(name).ifindex;

interface View {
  addresses: string[];
  cgroup?: string;
}
const addressOf = (v: View, family: 4 | 6) =>
  v.addresses.map((c) => c.split("/")[0]!).find((a) => a.includes(":") === (family === 6))!;

/** The listener in x and the lines it printed so far. */
interface Listener {
  heard: string[];
  stop(): Promise<void>;
}

async function listen(context: string): Promise<Listener> {
  const p = startLines([NETCTX, "exec", context, "--", PYTHON, "-c", LISTEN_PY, String(PORT)]);
  await p.next(); // "up"
  return {
    heard: p.lines,
    async stop() {
      await p.stop();
    },
  };
}

const settle = () => sleep(400);

/**
 * An i386 program without libc: socket(), setsockopt(SO_BINDTODEVICE, "nc-br"), then sendto() of "compat32" to
 * `dst`:`port` through socketcall; prints both results (negative errno). Built into the test's scratch directory.
 */
function compileCompatSender(dst: string, port: number): string | undefined {
  const src = String.raw`
static int sys(int nr, int a, int b, int c, int d, int e) {
  int r;
  __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e) : "memory");
  return r;
}
static void out(const char *s, int n) { sys(4, 1, (int)s, n, 0, 0); }
static void num(int v) {
  char b[12]; int i = 11, neg = v < 0;
  if (neg) v = -v;
  b[i--] = '\n';
  do { b[i--] = '0' + v % 10; v /= 10; } while (v);
  if (neg) b[i--] = '-';
  out(b + i + 1, 11 - i);
}
void _start(void) {
  static const char dev[] = "nc-br";
  unsigned char sa[16] = {2, 0, PORT >> 8, PORT & 255, DST};
  int fd = sys(359, 2, 2, 0, 0, 0);
  out("setsockopt ", 11); num(sys(366, fd, 1, 25, (int)dev, sizeof(dev) - 1));
  int args[6] = {fd, (int)"compat32", 8, 0, (int)sa, 16};
  out("sendto ", 7); num(sys(102, 11, (int)args, 0, 0, 0));
  sys(1, 0, 0, 0, 0, 0);
}
`;
  const dir = process.env.NETCTX_TEST_SCRATCH!;
  const bin = join(dir, "compat-sender");
  writeFileSync(`${bin}.c`, src);
  try {
    execFileSync("gcc", [
      "-m32",
      "-nostdlib",
      "-static",
      "-fno-pie",
      "-no-pie",
      "-O1",
      `-DPORT=${port}`,
      `-DDST=${dst.replaceAll(".", ",")}`,
      "-o",
      bin,
      `${bin}.c`,
    ]);
    return bin;
  } catch {
    return undefined;
  }
}

describe("l3: a context's sockets may name only its own networks' devices", () => {
  const ups: Upstream[] = [];
  let x: Listener;
  let b: View;
  let c: View;
  let x4 = "";
  let x6 = "";
  let xLinkLocal = "";
  let hn = 0;
  let br = 0;

  before(async () => {
    netctxOk(
      "network",
      "create",
      "hn",
      "--driver",
      "host",
      "--subnet",
      "10.71.0.0/24",
      "--subnet",
      "fd71::/64",
    );
    netctxOk(
      "network",
      "create",
      "br",
      "--driver",
      "bridge",
      "--subnet",
      "10.72.0.0/24",
      "--subnet",
      "fd72::/64",
    );
    ups.push(
      await startUpstream({
        name: "up71",
        bridge: "nc-hn",
        addresses: ["10.71.0.254/24", "fd71::fe/64"],
        far: [`${FAR4}/32`, `${FAR6}/128`],
        port: PORT,
      }),
    );
    netctxOk("create", "x", "--level", "l2", "--network", "br");
    netctxOk(
      "create",
      "b",
      "--level",
      "l3",
      "--network",
      "hn",
      "--route",
      "default via 10.71.0.254",
      "--route",
      "default via fd71::fe",
    );
    netctxOk("create", "c", "--level", "l3", "--network", "hn");
    netctxOk("create", "s", "--level", "socket", "--network", "hn");
    b = netctxJson<View>("inspect", "b");
    c = netctxJson<View>("inspect", "c");
    const xv = netctxJson<View>("inspect", "x");
    x4 = addressOf(xv, 4);
    x6 = addressOf(xv, 6);
    // Not every entry of the listing carries an address.
    xLinkLocal = ipj<{ addr_info: { local?: string }[] }>(
      ["-6", "addr", "show", "scope", "link"],
      contextNetns("x"),
    )
      .flatMap((i) => i.addr_info)
      .find((a) => a.local?.startsWith("fe80"))!.local!;
    hn = ifindex("nc-hn");
    br = ifindex("nc-br");
    x = await listen("x");
  });

  after(async () => {
    await x?.stop();
    netctxOk("rm", "x", "b", "c", "s");
    for (const u of ups) u.stop();
    netctxOk("network", "rm", "hn", "br");
  });

  /** What x heard from `tag`'s datagrams (their payload starts with it). */
  const heardFrom = (tag: string) => x.heard.filter((l) => l.startsWith(`udp ${tag}`));

  test("control: x is there, and b's table alone keeps b away from it", async () => {
    const [s4] = sockOps("s", [{ family: 4, tcp: true, connect: [x4, PORT] }]);
    assert.equal(s4!.data, "x", `a socket context reaches x through the main table: ${JSON.stringify(s4)}`);
    const [b4, b6] = sockOps("b", [
      { family: 4, send: [x4, PORT], payload: "control4" },
      { family: 6, send: [x6, PORT], payload: "control6" },
    ]);
    assert.ok(b4!.ok && b6!.ok, "sent into b's default route");
    await settle();
    assert.deepEqual([...heardFrom("control4"), ...heardFrom("control6")], []);
  });

  test("SO_BINDTODEVICE and SO_BINDTOIFINDEX: another network's device is EPERM, b's own works and reaches its network", () => {
    const far = (family: 4 | 6, opts: [number, number, string][]): SockOp => ({
      family,
      tcp: true,
      opts,
      connect: [family === 4 ? FAR4 : FAR6, PORT],
    });
    const results = sockOps("b", [
      { family: 4, tcp: true, opts: [[SOL_SOCKET, SO_BINDTODEVICE, hex.name("nc-br")]], connect: [x4, PORT] },
      { family: 6, tcp: true, opts: [[SOL_SOCKET, SO_BINDTODEVICE, hex.name("nc-br")]], connect: [x6, PORT] },
      { family: 4, tcp: true, opts: [[SOL_SOCKET, SO_BINDTOIFINDEX, hex.int(br)]], connect: [x4, PORT] },
      { family: 4, opts: [[SOL_SOCKET, SO_BINDTODEVICE, hex.name("lo")]] },
      far(4, [[SOL_SOCKET, SO_BINDTODEVICE, hex.name("nc-hn")]]),
      far(6, [[SOL_SOCKET, SO_BINDTODEVICE, hex.name("nc-hn")]]),
      far(4, [[SOL_SOCKET, SO_BINDTOIFINDEX, hex.int(hn)]]),
    ]);
    for (const r of results.slice(0, 4))
      assert.ok(!r.ok && r.step?.startsWith("setsockopt") && r.errno === "EPERM", JSON.stringify(r));
    const [, , , , own4, own6, ownIndex] = results;
    assert.equal(own4!.data, `up71 ${addressOf(b, 4)}`, JSON.stringify(own4));
    assert.equal(own6!.data, `up71 ${addressOf(b, 6)}`, JSON.stringify(own6));
    assert.equal(ownIndex!.data, `up71 ${addressOf(b, 4)}`, JSON.stringify(ownIndex));
  });

  test("SO_BINDTODEVICE reads the name as the kernel does: up to optlen and 15 bytes, to the first NUL", () => {
    const bind = (value: string): SockOp => ({ family: 4, opts: [[SOL_SOCKET, SO_BINDTODEVICE, value]] });
    const results = sockOps("b", [
      bind(""), // optlen 0: unbind
      bind("00"), // empty name: unbind
      bind(hex.name("nc-hn")), // no NUL
      bind(`${hex.name("nc-hn")}00${hex.name("junk")}`), // the kernel stops at the NUL
      bind(hex.name("nc-hnx")), // a longer name is another device
      bind(hex.name("nc-h")), // and so is a prefix
      bind(`${hex.name("nc-hn")}20`), // "nc-hn " is not nc-hn either
    ]);
    assert.deepEqual(
      results.map((r) => (r.ok ? "ok" : r.errno)),
      ["ok", "ok", "ok", "ok", "EPERM", "EPERM", "EPERM"],
    );
  });

  test("IP_UNICAST_IF and IPV6_UNICAST_IF (ifindex in network byte order): only b's own device, or none", async () => {
    const results = sockOps("b", [
      { family: 4, opts: [[SOL_IP, IP_UNICAST_IF, hex.be(br)]], send: [x4, PORT], payload: "ucast4" },
      { family: 6, opts: [[SOL_IPV6, IPV6_UNICAST_IF, hex.be(br)]], send: [x6, PORT], payload: "ucast6" },
      // The host-order form of the same ifindex names some other device number: refused too.
      { family: 4, opts: [[SOL_IP, IP_UNICAST_IF, hex.int(br)]] },
      { family: 4, opts: [[SOL_IP, IP_UNICAST_IF, hex.be(hn)]], send: [FAR4, PORT] },
      { family: 6, opts: [[SOL_IPV6, IPV6_UNICAST_IF, hex.be(hn)]], send: [FAR6, PORT] },
      { family: 4, opts: [[SOL_IP, IP_UNICAST_IF, hex.be(0)]] },
      { family: 6, opts: [[SOL_IPV6, IPV6_UNICAST_IF, hex.be(0)]] },
    ]);
    await settle();
    assert.deepEqual([...heardFrom("ucast4"), ...heardFrom("ucast6")], []);
    assert.deepEqual(
      results.map((r) => (r.ok ? "ok" : `${r.step} ${r.errno}`)),
      [
        `setsockopt(${SOL_IP}, ${IP_UNICAST_IF}) EPERM`,
        `setsockopt(${SOL_IPV6}, ${IPV6_UNICAST_IF}) EPERM`,
        `setsockopt(${SOL_IP}, ${IP_UNICAST_IF}) EPERM`,
        "ok",
        "ok",
        "ok",
        "ok",
      ],
    );
  });

  test("multicast devices and the sticky IPV6_PKTINFO: only b's own device (or address), or none", () => {
    const gw4 = "10.72.0.1"; // nc-br's address: naming it picks nc-br
    const mreqn = (ifindexValue: number, address = "0.0.0.0") =>
      `00000000${hex.ip4(address)}${hex.int(ifindexValue)}`;
    const results = sockOps("b", [
      { family: 4, opts: [[SOL_IP, IP_MULTICAST_IF, mreqn(br)]] },
      { family: 4, opts: [[SOL_IP, IP_MULTICAST_IF, mreqn(0, gw4)]] },
      { family: 4, opts: [[SOL_IP, IP_MULTICAST_IF, `00000000${hex.ip4(gw4)}`]] }, // struct ip_mreq
      { family: 4, opts: [[SOL_IP, IP_MULTICAST_IF, hex.ip4(gw4)]] }, // struct in_addr
      { family: 6, opts: [[SOL_IPV6, IPV6_MULTICAST_IF, hex.int(br)]] },
      { family: 6, opts: [[SOL_IPV6, IPV6_PKTINFO, pktinfo6(br)]] },
      { family: 4, opts: [[SOL_IP, IP_MULTICAST_IF, mreqn(hn)]] },
      { family: 4, opts: [[SOL_IP, IP_MULTICAST_IF, hex.ip4(addressOf(b, 4))]] },
      { family: 4, opts: [[SOL_IP, IP_MULTICAST_IF, hex.ip4("0.0.0.0")]] },
      { family: 6, opts: [[SOL_IPV6, IPV6_MULTICAST_IF, hex.int(hn)]] },
      { family: 6, opts: [[SOL_IPV6, IPV6_PKTINFO, pktinfo6(hn)]] },
      { family: 6, opts: [[SOL_IPV6, IPV6_PKTINFO, pktinfo6(0)]] },
    ]);
    assert.deepEqual(
      results.map((r) => (r.ok ? "ok" : r.errno)),
      [...Array(6).fill("EPERM"), ...Array(6).fill("ok")],
    );
  });

  test("per-datagram devices (IP_PKTINFO, a broadcast, an IPv6 scope id): b's packets leave only through its own devices", async () => {
    const results = sockOps("b", [
      { family: 4, send: [x4, PORT], cmsg: [[SOL_IP, IP_PKTINFO, pktinfo4(br)]], payload: "pktinfo4" },
      {
        family: 4,
        broadcast: true,
        send: ["255.255.255.255", PORT],
        cmsg: [[SOL_IP, IP_PKTINFO, pktinfo4(br)]],
        payload: "bcast4",
      },
      { family: 6, send: ["ff02::1", PORT, br], payload: "mcast6" },
      { family: 6, send: [xLinkLocal, PORT, br], payload: "scope6" },
      { family: 6, send: [x6, PORT], cmsg: [[SOL_IPV6, IPV6_PKTINFO, pktinfo6(br)]], payload: "pktinfo6" },
      // Its own device, per datagram, still works.
      { family: 4, send: [FAR4, PORT], cmsg: [[SOL_IP, IP_PKTINFO, pktinfo4(hn)]] },
      { family: 6, send: ["ff02::1", PORT, hn] },
    ]);
    await settle();
    assert.deepEqual(
      ["pktinfo4", "bcast4", "mcast6", "scope6", "pktinfo6"].flatMap(heardFrom),
      [],
      "x heard none of b's datagrams",
    );
    // The egress hook drops them, which sendmsg reports as EPERM.
    assert.deepEqual(
      results.slice(0, 4).map((r) => `${r.step} ${r.errno}`),
      Array(4).fill("sendmsg EPERM"),
    );
    assert.deepEqual(
      results.slice(5).map((r) => r.ok),
      [true, true],
    );
  });

  test("a 32-bit process, whose setsockopt the hook never sees, still cannot send through another network's device", async (t) => {
    // __sys_setsockopt runs the cgroup hook only `if (!in_compat_syscall())`. netctx exec refuses the i386 ABI
    // (seccomp), so this process joins b's cgroup directly, as root outside could put one there.
    const bin = compileCompatSender(x4, PORT);
    if (!bin) return t.skip("no gcc -m32 here");
    const out = must(inCgroupArgv(b.cgroup!, [bin]));
    await settle();
    assert.deepEqual(heardFrom("compat32"), [], "x heard nothing");
    assert.match(out, /^setsockopt 0\nsendto -1\n$/, "the option is set, the datagram refused (EPERM)");
  });

  test("an l3 context without a default route of its own: devices refused at setsockopt, packets not filtered", () => {
    const [bound] = sockOps("c", [{ family: 4, opts: [[SOL_SOCKET, SO_BINDTODEVICE, hex.name("nc-br")]] }]);
    assert.equal(bound!.errno, "EPERM");
    const hooks = (v: View) =>
      querySocketPolicy(v.cgroup!)
        .map((h) => h.attachType)
        .filter((t) => t === "CGROUP_SETSOCKOPT" || t === "CGROUP_INET_EGRESS");
    assert.deepEqual(hooks(b), ["CGROUP_SETSOCKOPT", "CGROUP_INET_EGRESS"]);
    // Its lookups fall through to the main table by design (README, l3): an egress filter would only break them.
    assert.deepEqual(hooks(c), ["CGROUP_SETSOCKOPT"]);
  });

  test("socket level keeps the seed's shared devices: any device may be named and used", async () => {
    const results = sockOps("s", [
      { family: 4, tcp: true, opts: [[SOL_SOCKET, SO_BINDTODEVICE, hex.name("nc-br")]], connect: [x4, PORT] },
      { family: 4, opts: [[SOL_IP, IP_UNICAST_IF, hex.be(br)]], send: [x4, PORT], payload: "sock-ucast4" },
      { family: 4, send: [x4, PORT], cmsg: [[SOL_IP, IP_PKTINFO, pktinfo4(br)]], payload: "sock-pktinfo4" },
    ]);
    assert.equal(results[0]!.data, "x", JSON.stringify(results[0]));
    assert.ok(results[1]!.ok && results[2]!.ok, JSON.stringify(results));
    await settle();
    assert.equal(heardFrom("sock-ucast4").length, 1);
    assert.equal(heardFrom("sock-pktinfo4").length, 1);
    assert.equal(querySocketPolicy(netctxJson<View>("inspect", "s").cgroup!).length, 10);
  });
});

describe("gc keeps an l3 context's device guard in step with its devices", () => {
  interface Report {
    actions: { action: string; object: string; reason: string; error?: string }[];
  }
  let g: View;
  const reattached = (r: Report) => r.actions.filter((a) => a.action === "reattach");

  before(() => {
    netctxOk("network", "create", "gn", "--driver", "host", "--subnet", "10.73.0.0/24");
    netctxOk("network", "create", "gx", "--driver", "bridge", "--subnet", "10.74.0.0/24");
    netctxOk("create", "g", "--level", "l3", "--network", "gn", "--route", "default via 10.73.0.254");
    g = netctxJson<View>("inspect", "g");
  });

  after(() => {
    netctxOk("rm", "g");
    netctxOk("network", "rm", "gn", "gx");
  });

  const bindIndex = (name: string) =>
    sockOps("g", [{ family: 4, opts: [[SOL_SOCKET, SO_BINDTOIFINDEX, hex.int(ifindex(name))]] }])[0]!;

  test("a healthy scene: nothing to reattach (the device programs' tags match a fresh build)", () => {
    assert.deepEqual(reattached(netctxJson<Report>("gc", "--dry-run")), []);
  });

  test("a missing device guard (a context made before it existed) is attached", () => {
    withFd(openCgroup(g.cgroup!), (cg) => {
      for (const id of queryPrograms(cg, "CGROUP_SETSOCKOPT")) {
        const fd = progFdById(id);
        try {
          detachProgram(cg, fd, "CGROUP_SETSOCKOPT");
        } finally {
          closeFd(fd);
        }
      }
    });
    assert.equal(bindIndex("nc-gx").ok, true, "unguarded now");
    const done = netctxJson<Report>("gc");
    assert.deepEqual(
      reattached(done).map((a) => a.reason),
      ["nothing of ours at CGROUP_SETSOCKOPT"],
    );
    assert.equal(bindIndex("nc-gx").errno, "EPERM");
  });

  test("a host device made again has a new ifindex: gc remakes the programs with it", () => {
    const before = ifindex("nc-gn");
    sh("ip link del nc-gn");
    const done = netctxJson<Report>("gc");
    const objects = done.actions.map((a) => `${a.action} ${a.object}`);
    assert.ok(objects.includes("recreate network gn"), objects.join(", "));
    assert.notEqual(ifindex("nc-gn"), before);
    assert.ok(
      reattached(done).some((a) => a.object === `bpf ${g.cgroup}`),
      JSON.stringify(done.actions),
    );
    assert.deepEqual(
      done.actions.filter((a) => a.error),
      [],
    );
    assert.equal(bindIndex("nc-gn").ok, true, "its own device, by its new ifindex");
    assert.equal(bindIndex("nc-gx").errno, "EPERM");
    // The egress guard follows too: a datagram through the new nc-gn leaves, one through nc-gx does not.
    const sends = sockOps("g", [
      { family: 4, send: ["10.73.0.254", PORT], cmsg: [[SOL_IP, IP_PKTINFO, pktinfo4(ifindex("nc-gn"))]] },
      { family: 4, send: ["10.74.0.9", PORT], cmsg: [[SOL_IP, IP_PKTINFO, pktinfo4(ifindex("nc-gx"))]] },
    ]);
    assert.deepEqual(
      sends.map((r) => (r.ok ? "ok" : r.errno)),
      ["ok", "EPERM"],
    );
    assert.deepEqual(reattached(netctxJson<Report>("gc", "--dry-run")), [], "converged");
  });
});
