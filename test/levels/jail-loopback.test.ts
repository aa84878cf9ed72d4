/**
 * Loopback like a jail, for the shared-stack levels (socket and l3), through the CLI and `netctx exec`: a context's
 * 127.0.0.1 and ::1 are its own address. An app inside that binds 127.0.0.1:8080 is reached by itself over
 * 127.0.0.1:8080 (TCP and UDP, v4 and v6); two contexts both binding it do not collide; the host's loopback services
 * (started here, in the throwaway host namespace) are out of reach by every way root inside can try, except the one
 * port `--allow-host-port` opens. Every refusal has a control outside the contexts where the same call succeeds.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { detachProgram, openCgroup, progFdById, queryPrograms, withFd } from "../../src/kernel/bpf/attach.ts";
import { querySocketPolicy } from "../../src/kernel/bpf/socket-policy.ts";
import { closeFd } from "../../src/kernel/bpf/syscall.ts";
import { execScript, netctx, netctxJson, netctxOk } from "../utils/cli.ts";
import { type ProbeOp, probe, type RunningProbe, startServing } from "../utils/socket-probe.ts";
import { type Listener, tcpConnect, tcpListener, udpListener } from "../utils/sockets.ts";

const NET4 = "10.67.0";
const NET6 = "fd67::";
const GW4 = `${NET4}.1`;
/** A network without IPv6, for a context that has none. */
const NET4_ONLY = "10.68.0";

/** Host loopback services (outside every context): each records the peers that reached it. */
interface HostService {
  tcp: Listener;
  udp: Listener;
}

async function hostService(host: string): Promise<HostService> {
  return { tcp: await tcpListener(host), udp: await udpListener(host) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const LEVELS = ["socket", "l3"] as const;

describe("loopback like a jail", () => {
  let lo4: HostService;
  let lo6: HostService;
  let lo2: HostService;
  /** The one host port contexts "*-a" are allowed (TCP only), and another one nobody is. */
  let open: Listener;
  let closed: Listener;
  const servers: RunningProbe[] = [];
  const addr = (level: string, ctx: string, family: 4 | 6) => {
    const i = LEVELS.indexOf(level as (typeof LEVELS)[number]) * 10 + { a: 2, b: 3, c: 4 }[ctx]!;
    if (ctx === "c") return `${NET4_ONLY}.${i}`;
    return family === 4 ? `${NET4}.${i}` : `${NET6}${i}`;
  };

  before(async () => {
    execFileSync("ip", ["link", "set", "lo", "up"]);
    lo4 = await hostService("127.0.0.1");
    lo6 = await hostService("::1");
    lo2 = await hostService("127.0.0.2");
    open = await tcpListener("127.0.0.1");
    closed = await tcpListener("127.0.0.1");
    netctxOk(
      "network",
      "create",
      "hn",
      "--driver",
      "host",
      "--subnet",
      `${NET4}.0/24`,
      "--subnet",
      `${NET6}/64`,
    );
    netctxOk("network", "create", "hn4", "--driver", "host", "--subnet", `${NET4_ONLY}.0/24`);
    for (const level of LEVELS) {
      const args = (ctx: string) => [
        "--level",
        level,
        "--network",
        ctx === "c" ? "hn4" : "hn",
        "--ip",
        addr(level, ctx, 4),
        ...(ctx === "c" ? [] : ["--ip", addr(level, ctx, 6)]),
      ];
      netctxOk("create", `${level}-a`, ...args("a"), "--allow-host-port", `${open.port}/tcp`);
      netctxOk("create", `${level}-b`, ...args("b"));
      netctxOk("create", `${level}-c`, ...args("c"));
    }
  });

  after(async () => {
    for (const s of servers) await s.stop();
    for (const l of [lo4.tcp, lo4.udp, lo6.tcp, lo6.udp, lo2.tcp, lo2.udp, open, closed]) l.close();
    for (const level of LEVELS) netctxOk("rm", `${level}-a`, `${level}-b`, `${level}-c`);
    netctxOk("network", "rm", "hn", "hn4");
  });

  test("the host's loopback services answer outside the contexts (the control)", async () => {
    for (const [host, s] of [
      ["127.0.0.1", lo4],
      ["::1", lo6],
      ["127.0.0.2", lo2],
    ] as const)
      assert.equal(await tcpConnect(host, s.tcp.port, 1000), "connected", host);
    const [udp] = await probe(undefined, [{ op: "udp", host: "127.0.0.1", port: lo4.udp.port }]);
    assert.equal(udp!.ok, true);
    await sleep(100);
    assert.deepEqual(lo4.udp.peers, ["127.0.0.1"]);
    lo4.udp.peers.length = 0;
    lo4.tcp.peers.length = 0;
    lo6.tcp.peers.length = 0;
    lo2.tcp.peers.length = 0;
  });

  test("inspect shows the allowed host port; l2 and a bad port are refused with the field named", () => {
    const view = netctxJson<{ allowHostPorts?: string[] }>("inspect", "socket-a");
    assert.deepEqual(view.allowHostPorts, [`${open.port}/tcp`]);
    assert.equal(netctxJson<{ allowHostPorts?: string[] }>("inspect", "socket-b").allowHostPorts, undefined);
    const bad = netctx("create", "x", "--level", "socket", "--network", "hn", "--allow-host-port", "70000");
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /allowHostPorts/);
    const proto = netctx(
      "create",
      "x",
      "--level",
      "socket",
      "--network",
      "hn",
      "--allow-host-port",
      "53/sctp",
    );
    assert.notEqual(proto.code, 0);
    assert.match(proto.stderr, /allowHostPorts.*tcp or udp/);
    netctxOk("network", "create", "br", "--driver", "bridge", "--subnet", "10.69.0.0/24");
    const l2 = netctx("create", "x", "--level", "l2", "--network", "br", "--allow-host-port", "53");
    netctxOk("network", "rm", "br");
    assert.notEqual(l2.code, 0);
    assert.match(l2.stderr, /allowHostPorts: only l3 and socket/);
    assert.notEqual(netctx("inspect", "x").code, 0, "nothing was made");
  });

  test("apply files take allowHostPorts; a second apply changes nothing, another port remakes the context", async () => {
    const dir = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH ?? "/tmp", "jail-apply-"));
    const scene = (ports: string) => {
      const path = join(dir, "scene.yaml");
      writeFileSync(
        path,
        `name: jail\ncontexts:\n  - { name: ap, level: socket, networks: [hn], ips: [${NET4}.40], allowHostPorts: [${ports}] }\n`,
      );
      return path;
    };
    netctxOk("apply", scene(`"${closed.port}/tcp"`));
    assert.deepEqual(netctxJson<{ allowHostPorts?: string[] }>("inspect", "ap").allowHostPorts, [
      `${closed.port}/tcp`,
    ]);
    assert.match(netctxOk("apply", scene(`"${closed.port}/tcp"`)), /nothing to do/);
    const [before] = await probe({ context: "ap" }, [{ op: "tcp", host: "127.0.0.1", port: closed.port }]);
    assert.deepEqual([before!.ok, before!.data], [true, `${NET4}.40`], JSON.stringify(before));
    netctxOk("apply", scene(`"${open.port}"`));
    assert.deepEqual(netctxJson<{ allowHostPorts?: string[] }>("inspect", "ap").allowHostPorts, [
      `${open.port}/tcp`,
    ]);
    const [now] = await probe({ context: "ap" }, [
      { op: "tcp", host: "127.0.0.1", port: closed.port, timeoutMs: 1000 },
    ]);
    assert.equal(now!.ok, false, JSON.stringify(now));
    const bad = netctx("apply", scene(`"x"`));
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /allowHostPorts/);
    netctxOk("destroy", scene(`"${open.port}"`));
    closed.peers.length = 0;
    open.peers.length = 0;
  });

  test("a context without the recvmsg programs (made before the jail) is brought up to date by gc", async () => {
    const cgroup = netctxJson<{ cgroup: string }>("inspect", "socket-b").cgroup;
    withFd(openCgroup(cgroup), (cg) => {
      for (const type of ["CGROUP_UDP4_RECVMSG", "CGROUP_UDP6_RECVMSG"] as const)
        for (const id of queryPrograms(cg, type)) {
          const fd = progFdById(id);
          detachProgram(cg, fd, type);
          closeFd(fd);
        }
    });
    assert.equal(querySocketPolicy(cgroup).length, 8);
    const serve: ProbeOp = { op: "serve", proto: "udp", port: 8070, hosts: ["127.0.0.1"] };
    const ask: ProbeOp = { op: "udp", host: "127.0.0.1", port: 8070, reply: true };
    const [, stale] = await probe({ context: "socket-b" }, [serve, ask]);
    assert.equal(
      stale!.from,
      addr("socket", "b", 4),
      "without the hook the answer shows the context's address",
    );
    netctxOk("gc");
    assert.equal(querySocketPolicy(cgroup).length, 10);
    const [, fixed] = await probe({ context: "socket-b" }, [serve, ask]);
    assert.equal(fixed!.from, "127.0.0.1", JSON.stringify(fixed));
  });

  for (const level of LEVELS) {
    const own4 = () => addr(level, "a", 4);
    const own6 = () => addr(level, "a", 6);

    test(`${level}: an app binding 127.0.0.1:8080 / [::1]:8080 is reached by itself over loopback (TCP, UDP)`, async () => {
      const r = await probe({ context: `${level}-a` }, [
        { op: "serve", proto: "tcp", port: 8080, hosts: ["127.0.0.1"], answer: "a4 " },
        { op: "serve", proto: "udp", port: 8080, hosts: ["127.0.0.1"], answer: "a4 " },
        { op: "serve", proto: "tcp", port: 8081, hosts: ["::1"], answer: "a6 " },
        { op: "serve", proto: "udp", port: 8081, hosts: ["::1"], answer: "a6 " },
        { op: "tcp", host: "127.0.0.1", port: 8080 },
        { op: "udp", host: "127.0.0.1", port: 8080, reply: true },
        { op: "udp", host: "127.0.0.1", port: 8080, reply: true, connect: true },
        { op: "tcp", host: "::1", port: 8081 },
        { op: "udp", host: "::1", port: 8081, reply: true },
        { op: "tcp", host: "127.0.0.5", port: 8080 },
      ]);
      for (const s of r.slice(0, 4)) assert.equal(s.ok, true, JSON.stringify(s));
      const [tcp4, udp4, udp4c, tcp6, udp6, tcp127] = r.slice(4);
      // The server sees its peer at the context's address; getsockname shows it too (as in a FreeBSD jail).
      assert.deepEqual(
        [tcp4!.ok, tcp4!.data, tcp4!.address],
        [true, `a4 ${own4()}`, own4()],
        JSON.stringify(tcp4),
      );
      // A UDP answer from the context's own address is shown as from loopback, the address the client sent to.
      assert.deepEqual([udp4!.ok, udp4!.from], [true, "127.0.0.1"], JSON.stringify(udp4));
      assert.equal(udp4!.data, "a4 127.0.0.1");
      assert.deepEqual([udp4c!.ok, udp4c!.from], [true, "127.0.0.1"], JSON.stringify(udp4c));
      assert.deepEqual(
        [tcp6!.ok, tcp6!.data, tcp6!.address],
        [true, `a6 ${own6()}`, own6()],
        JSON.stringify(tcp6),
      );
      assert.deepEqual([udp6!.ok, udp6!.from], [true, "::1"], JSON.stringify(udp6));
      // All of 127.0.0.0/8 is the context's loopback.
      assert.deepEqual([tcp127!.ok, tcp127!.data], [true, `a4 ${own4()}`], JSON.stringify(tcp127));
    });

    test(`${level}: two contexts both binding 127.0.0.1:8080 do not collide; each reaches only itself`, async () => {
      for (const ctx of ["a", "b"])
        servers.push(
          await startServing(
            { op: "serve", proto: "tcp", port: 8090, hosts: ["127.0.0.1"], answer: `${ctx} ` },
            { context: `${level}-${ctx}` },
          ),
        );
      for (const ctx of ["a", "b"]) {
        const [r] = await probe({ context: `${level}-${ctx}` }, [
          { op: "tcp", host: "127.0.0.1", port: 8090 },
        ]);
        assert.deepEqual([r!.ok, r!.data], [true, `${ctx} ${addr(level, ctx, 4)}`], JSON.stringify(r));
      }
      // The host's own 127.0.0.1:8090 is free: the contexts' listeners sit on their addresses.
      assert.equal(await tcpConnect("127.0.0.1", 8090, 1000), "ECONNREFUSED");
      assert.equal(await tcpConnect(addr(level, "b", 4), 8090, 1000), "connected");
    });

    test(`${level}: root inside cannot reach the host's loopback services (TCP, UDP, v4, v6, mapped, 127.0.0.2, host address)`, async () => {
      const ops = [
        { op: "tcp", host: "127.0.0.1", port: lo4.tcp.port, timeoutMs: 1000 },
        { op: "tcp", host: "::1", port: lo6.tcp.port, timeoutMs: 1000 },
        { op: "tcp", host: "::ffff:127.0.0.1", port: lo4.tcp.port, timeoutMs: 1000 },
        { op: "tcp", host: "127.0.0.2", port: lo2.tcp.port, timeoutMs: 1000 },
        { op: "tcp", host: GW4, port: lo4.tcp.port, timeoutMs: 1000 },
        { op: "tcp", host: "127.0.0.1", port: closed.port, timeoutMs: 1000 },
        { op: "udp", host: "127.0.0.1", port: lo4.udp.port },
        { op: "udp", host: "127.0.0.1", port: lo4.udp.port, connect: true },
        { op: "udp", host: "::1", port: lo6.udp.port },
        { op: "udp", host: "::1", port: lo6.udp.port, connect: true },
        { op: "udp", host: "::ffff:127.0.0.1", port: lo4.udp.port },
        { op: "udp", host: "::ffff:127.0.0.1", port: lo4.udp.port, connect: true },
        { op: "udp", host: "127.0.0.2", port: lo2.udp.port },
        // The allowed port is TCP only.
        { op: "udp", host: "127.0.0.1", port: open.port },
      ] as const;
      for (const ctx of ["a", "b", "c"]) {
        const r = await probe({ context: `${level}-${ctx}` }, [...ops]);
        r.slice(0, 6).forEach((x, i) => {
          assert.equal(x.ok, false, `${ctx}: ${JSON.stringify(ops[i])} reached: ${JSON.stringify(x)}`);
        });
      }
      // TCP fast open connects inside sendto(): the connect hook runs there too (tcp_sendmsg_fastopen's pre_connect).
      const tfo = await execScript(
        `${level}-a`,
        `python3 -c '
import signal, socket
signal.alarm(5)
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.sendto(b"x", socket.MSG_FASTOPEN, (host, ${lo4.tcp.port} if fam == socket.AF_INET else ${lo6.tcp.port})); s.recv(1); print("reached")
    except OSError as e:
        print("refused", e.errno)
'`,
      );
      // ECONNREFUSED (111): the SYN went to the context's own address, where nothing listens on that port.
      assert.equal(tfo.stdout, "refused 111\nrefused 111\n", tfo.stdout + tfo.stderr);
      await sleep(300);
      for (const [name, l] of Object.entries({
        lo4tcp: lo4.tcp,
        lo4udp: lo4.udp,
        lo6tcp: lo6.tcp,
        lo6udp: lo6.udp,
        lo2tcp: lo2.tcp,
        lo2udp: lo2.udp,
        closed,
      }))
        assert.deepEqual(l.peers, [], `${name} was reached from a context`);
    });

    test(`${level}: --allow-host-port opens exactly that port, to the host's loopback service, from the context's address`, async () => {
      const [v4, mapped, other] = await probe({ context: `${level}-a` }, [
        { op: "tcp", host: "127.0.0.1", port: open.port },
        { op: "tcp", host: "::ffff:127.0.0.1", port: open.port },
        { op: "tcp", host: "127.0.0.1", port: closed.port, timeoutMs: 1000 },
      ]);
      assert.deepEqual([v4!.ok, v4!.data], [true, own4()], JSON.stringify(v4));
      assert.deepEqual([mapped!.ok, mapped!.data], [true, own4()], JSON.stringify(mapped));
      assert.equal(other!.ok, false, JSON.stringify(other));
      assert.deepEqual(closed.peers, []);
      // A context not allowed the port does not reach it.
      const [b] = await probe({ context: `${level}-b` }, [
        { op: "tcp", host: "127.0.0.1", port: open.port, timeoutMs: 1000 },
      ]);
      assert.equal(b!.ok, false, JSON.stringify(b));
      assert.deepEqual(open.peers, [own4(), own4()]);
      open.peers.length = 0;
    });

    test(`${level}: a context without IPv6 gets EPERM for ::1 (bind and connect); its 127.0.0.1 still works`, async () => {
      const r = await probe({ context: `${level}-c` }, [
        { op: "bind", host: "::1" },
        { op: "tcp", host: "::1", port: 8080 },
        { op: "udp", host: "::1", port: 8080 },
        { op: "serve", proto: "tcp", port: 8080, hosts: ["127.0.0.1"] },
        { op: "tcp", host: "127.0.0.1", port: 8080 },
      ]);
      for (const x of r.slice(0, 3)) assert.deepEqual([x.ok, x.code], [false, "EPERM"], JSON.stringify(x));
      assert.deepEqual([r[4]!.ok, r[4]!.data], [true, addr(level, "c", 4)], JSON.stringify(r[4]));
    });
  }
});
