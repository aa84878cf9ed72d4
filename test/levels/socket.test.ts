/**
 * Level socket through the CLI: two contexts on one host network; what their processes (run with `netctx exec`)
 * may bind, the source their traffic leaves with, what a listener that never bound receives, and what root inside
 * cannot do. Every refusal has a control outside the context where the same operation succeeds.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { cgroup2Root, cgroupProcs } from "../../src/kernel/cgroup.ts";
import { commOf } from "../utils/cgroup.ts";
import { execScript, netctxJson, netctxOk } from "../utils/cli.ts";
import { probe, probeArgv, SOCKET_PROBE, startProbe } from "../utils/socket-probe.ts";
import { tcpConnect, tcpListener, udpListener } from "../utils/sockets.ts";
import { waitFor } from "../utils/wait.ts";

const A4 = "10.66.0.2";
const B4 = "10.66.0.3";
const GW4 = "10.66.0.1";
const A6 = "fd66::2";
const B6 = "fd66::3";
const GW6 = "fd66::1";

/** Connect from outside any context; resolves with whether the connection was accepted. */
const connects = async (host: string, port: number) => (await tcpConnect(host, port, 1500)) === "connected";

/** A TCP and a UDP listener in the host namespace (outside every context) that record the sources they see. */
async function hostListeners(host: string) {
  const tcp = await tcpListener(host);
  const udp = await udpListener(host);
  return {
    tcpPort: tcp.port,
    udpPort: udp.port,
    seenUdp: udp.peers,
    close() {
      tcp.close();
      udp.close();
    },
  };
}

describe("level socket", () => {
  before(() => {
    netctxOk(
      "network",
      "create",
      "hn",
      "--driver",
      "host",
      "--subnet",
      "10.66.0.0/24",
      "--subnet",
      "fd66::/64",
    );
    netctxOk("create", "a", "--level", "socket", "--network", "hn", "--ip", A4, "--ip", A6);
    netctxOk("create", "b", "--level", "socket", "--network", "hn", "--ip", B4, "--ip", B6);
  });

  after(() => {
    netctxOk("rm", "a", "b");
    netctxOk("network", "rm", "hn");
  });

  for (const [family, own, other, wildcard] of [
    [4, A4, B4, "0.0.0.0"],
    [6, A6, B6, "::"],
  ] as const) {
    test(`IPv${family} binds: own ok, foreign EPERM, wildcard narrowed; raw refused; all allowed outside`, async () => {
      const ops = [
        { op: "bind", host: own },
        { op: "bind", host: other },
        { op: "bind", host: wildcard },
        { op: "raw", family },
      ] as const;
      const [ownBind, foreign, wild, raw] = await probe({ context: "a" }, [...ops]);
      assert.equal(ownBind!.ok, true, JSON.stringify(ownBind));
      assert.equal(ownBind!.address, own);
      assert.deepEqual([foreign!.ok, foreign!.code], [false, "EPERM"]);
      assert.equal(wild!.ok, true, JSON.stringify(wild));
      assert.equal(wild!.address, own, "getsockname shows the context's address, not the wildcard");
      assert.deepEqual([raw!.ok, raw!.code], [false, "EPERM"]);

      const [o1, o2, o3, o4] = await probe(undefined, [...ops]);
      assert.deepEqual(
        [o1!.ok, o2!.ok, o3!.ok, o3!.address, o4!.ok],
        [true, true, true, wildcard, true],
        "the same probe outside the context",
      );
    });

    test(`IPv${family}: TCP and UDP from the context reach a host listener with its own source`, async () => {
      const l = await hostListeners(family === 4 ? GW4 : GW6);
      try {
        const gw = family === 4 ? GW4 : GW6;
        const [t, u] = await probe({ context: "a" }, [
          { op: "tcp", host: gw, port: l.tcpPort },
          { op: "udp", host: gw, port: l.udpPort },
        ]);
        assert.equal(t!.ok, true, JSON.stringify(t));
        assert.equal(t!.data, own, "the listener saw the context's address");
        assert.equal(u!.ok, true, JSON.stringify(u));
        await waitFor(() => l.seenUdp.length > 0);
        assert.deepEqual(l.seenUdp, [own]);
        // Control: outside the context the kernel picks the source itself (the host's own address on the way).
        const [ot, ou] = await probe(undefined, [
          { op: "tcp", host: gw, port: l.tcpPort },
          { op: "udp", host: gw, port: l.udpPort },
        ]);
        assert.equal(ot!.ok && ou!.ok, true);
        await waitFor(() => l.seenUdp.length > 1);
        assert.equal(ot!.data, gw);
        assert.equal(l.seenUdp[1], gw);
      } finally {
        l.close();
      }
    });
  }

  test("a listener in a that never called bind gets no connection addressed to b", async () => {
    const inside = startProbe(probeArgv([{ op: "listen-nobind" }, { op: "wait" }], { context: "a" }));
    const outside = startProbe(probeArgv([{ op: "listen-nobind" }, { op: "wait" }]));
    try {
      const port = (await inside.next()).port!;
      assert.ok(port > 0);
      assert.equal(await connects(B4, port), false, "to b's IPv4 address");
      assert.equal(await connects(B6, port), false, "to b's IPv6 address");
      assert.equal(await connects(A4, port), true, "to a's own address the listener works");
      assert.equal(await connects(A6, port), true, "to a's own IPv6 address too");
      // Control: the same unbound listener outside any context answers on b's address.
      const outPort = (await outside.next()).port!;
      assert.equal(await connects(B4, outPort), true);
    } finally {
      await inside.stop();
      await outside.stop();
    }
  });

  test("root inside (netctx exec) cannot add a route, open raw or packet sockets, or leave its cgroup", async () => {
    const cgroup = netctxJson<{ cgroup: string }>("inspect", "a").cgroup;
    const procs = `${cgroup2Root()}/cgroup.procs`;
    const script = [
      "id -u",
      "ip route add 10.98.0.0/24 dev lo 2>/dev/null && echo route=ok || echo route=refused",
      `(echo $$ > ${procs}) 2>/dev/null && echo procs=ok || echo procs=refused`,
      // Through a process outside the confinement (the netctx that started us): its mount namespace has cgroupfs rw.
      `(echo $$ > /proc/$PPID/root${procs}) 2>/dev/null && echo parent-root=ok || echo parent-root=refused`,
      // Becoming another user would pass the ptrace check on that user's processes outside, and their /proc/PID/root.
      "setpriv --reuid nobody true 2>/dev/null && echo setuid=ok || echo setuid=refused",
      `${process.execPath} ${SOCKET_PROBE} '[{"op":"raw"},{"op":"packet"}]'`,
      "echo pid=$$",
      "read x",
    ].join("\n");
    let inCgroup: boolean | undefined;
    const r = await execScript("a", script, (line, stdin) => {
      if (!line.startsWith("pid=")) return;
      // $$ is the shell's pid in the exec's own PID namespace; the host knows it by its command name.
      inCgroup = cgroupProcs(cgroup).some((pid) => commOf(pid) === "sh");
      stdin.end("\n");
    });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.deepEqual(lines.slice(0, 5), [
      "0",
      "route=refused",
      "procs=refused",
      "parent-root=refused",
      "setuid=refused",
    ]);
    assert.deepEqual(
      lines.slice(5, 7).map((l) => JSON.parse(l) as { ok: boolean; code: string }),
      [
        { ok: false, code: "EPERM" },
        { ok: false, code: "EPERM" },
      ],
    );
    assert.equal(inCgroup, true, "the shell is still in the context's cgroup after trying to leave");
    // Control: outside, the same root opens a packet socket.
    const [pkt] = await probe(undefined, [{ op: "packet" }]);
    assert.equal(pkt!.ok, true);
  });
});
