import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  attachSocketPolicy,
  bpfAvailable,
  detachSocketPolicy,
  querySocketPolicy,
} from "../../src/kernel/bpf/socket-policy.ts";
import { cgroupProcs, contextsCgroupParent, createCgroup, removeCgroup } from "../../src/kernel/cgroup.ts";
import { testConfig } from "../utils/config.ts";
import { probe, probeArgv, startProbe } from "../utils/socket-probe.ts";
import { type Listener, tcpConnect, tcpListener, udpListener } from "../utils/sockets.ts";
import { waitFor } from "../utils/wait.ts";
import { A4, A6, B4, B6, C4, C6, HOST4, HOST6, setUpHostBridge } from "./host-bridge.ts";

let cgA = "";
let cgB = "";
const tcpPeers: string[] = [];
const udpPeers: string[] = [];
const servers: Listener[] = [];

/** A listener on the host recording its peers in tcpPeers or udpPeers; its port. */
async function tcpPort(host: string): Promise<number> {
  const l = await tcpListener(host, tcpPeers);
  servers.push(l);
  return l.port;
}

async function udpPort(host: string): Promise<number> {
  const l = await udpListener(host, udpPeers);
  servers.push(l);
  return l.port;
}

/** A TCP connect from the test process (outside every context) with a short timeout. */
const connectFromHost = (host: string, port: number) => tcpConnect(host, port, 800);

describe("socket policy on a context cgroup", () => {
  before(() => {
    assert.deepEqual(bpfAvailable(), { ok: true });
    setUpHostBridge();
    cgA = join(contextsCgroupParent(testConfig().cgroupParent), "a");
    cgB = join(contextsCgroupParent(testConfig().cgroupParent), "b");
    createCgroup(cgA);
    createCgroup(cgB);
    attachSocketPolicy(cgA, { ipv4: A4, ipv6: A6, fwmark: 0x2a });
    attachSocketPolicy(cgB, { ipv4: B4, ipv6: B6 });
  });

  after(() => {
    for (const s of servers) s.close();
    for (const cg of [cgA, cgB]) {
      detachSocketPolicy(cg);
      removeCgroup(cg);
    }
  });

  test("bind: own address ok, other context's EPERM, wildcard and loopback narrowed to it (v4 and v6)", async () => {
    const r = await probe({ cgroup: cgA }, [
      { op: "bind", host: A4 },
      { op: "bind", host: B4 },
      { op: "bind", host: "0.0.0.0" },
      { op: "bind", host: "127.0.0.1" },
      { op: "bind", host: A6 },
      { op: "bind", host: B6 },
      { op: "bind", host: "::" },
      { op: "bind", host: "::1" },
      { op: "bind", host: `::ffff:${B4}` },
      { op: "bind", host: "127.0.0.9" },
      { op: "bind", host: "::ffff:127.0.0.1" },
    ]);
    assert.equal(r[0]!.ok, true);
    assert.equal(r[0]!.address, A4);
    assert.equal(r[1]!.code, "EPERM");
    assert.equal(r[2]!.ok, true);
    assert.equal(r[2]!.address, A4);
    // Loopback is the context's own address (jail-loopback.ts): contexts never share loopback ports.
    assert.equal(r[3]!.address, A4, JSON.stringify(r[3]));
    assert.equal(r[4]!.address, A6);
    assert.equal(r[5]!.code, "EPERM");
    assert.equal(r[6]!.address, A6);
    assert.equal(r[7]!.address, A6, JSON.stringify(r[7]));
    assert.equal(r[8]!.code, "EPERM", "a v4-mapped bind on a v6 socket must not slip past the bind6 hook");
    assert.equal(r[9]!.address, A4, "all of 127.0.0.0/8");
    assert.equal(r[10]!.code, "EPERM", "a v4-mapped loopback bind is refused like any v4-mapped one");
  });

  test("outgoing TCP and UDP (unconnected and connected) leave with the context's address", async () => {
    const t4 = await tcpPort(HOST4);
    const t6 = await tcpPort(HOST6);
    const u4 = await udpPort(HOST4);
    const u6 = await udpPort(HOST6);
    const r = await probe({ cgroup: cgA }, [
      { op: "tcp", host: HOST4, port: t4 },
      { op: "tcp", host: HOST6, port: t6 },
      { op: "udp", host: HOST4, port: u4 },
      { op: "udp", host: HOST6, port: u6 },
      { op: "udp", host: HOST4, port: u4, connect: true },
    ]);
    assert.deepEqual(
      r.map((x) => x.ok),
      [true, true, true, true, true],
      JSON.stringify(r),
    );
    assert.equal(r[0]!.address, A4);
    assert.equal(r[1]!.address, A6);
    assert.equal(r[4]!.address, A4);
    await waitFor(() => tcpPeers.length >= 2 && udpPeers.length >= 3, 1000);
    assert.deepEqual(tcpPeers.sort(), [A4, A6].sort());
    assert.deepEqual(udpPeers.sort(), [A4, A4, A6].sort());
  });

  test("raw and ping sockets are refused; the socket mark is the context's fwmark", async () => {
    const r = await probe({ cgroup: cgA }, [
      { op: "raw" },
      { op: "raw", family: 6 },
      { op: "ping-socket" },
      { op: "mark" },
    ]);
    assert.equal(r[0]!.code, "EPERM");
    assert.equal(r[1]!.code, "EPERM");
    assert.equal(r[2]!.code, "EPERM");
    assert.equal(r[3]!.value, 0x2a);
  });

  test("the same probe outside any context is allowed everything", async () => {
    const r = await probe(undefined, [
      { op: "bind", host: B4 },
      { op: "bind", host: "0.0.0.0" },
      { op: "bind", host: "::" },
      { op: "raw" },
      { op: "mark" },
      { op: "ping-socket" },
    ]);
    assert.equal(r[0]!.ok, true);
    assert.equal(r[1]!.address, "0.0.0.0");
    assert.equal(r[2]!.address, "::");
    assert.equal(r[3]!.ok, true);
    assert.equal(r[4]!.value, 0);
    assert.equal(r[5]!.ok, true);
  });

  test("a child of a confined process is confined too", async () => {
    const [r] = await probe({ cgroup: cgA }, [
      {
        op: "child",
        ops: [
          { op: "bind", host: B4 },
          { op: "bind", host: "0.0.0.0" },
        ],
      },
    ]);
    assert.equal(r!.children?.[0]?.code, "EPERM");
    assert.equal(r!.children?.[1]?.address, A4);
  });

  test("a listener that never called bind() does not accept connections to another context's address", async () => {
    const p = startProbe(probeArgv([{ op: "listen-nobind" }, { op: "wait" }], { cgroup: cgA }));
    try {
      const l = await p.next();
      assert.equal(l.ok, true);
      const port = l.port!;
      const [toB4, toB6, toA4, toA6] = await Promise.all([
        connectFromHost(B4, port),
        connectFromHost(B6, port),
        connectFromHost(A4, port),
        connectFromHost(A6, port),
      ]);
      assert.equal(toA4, "connected");
      assert.equal(toA6, "connected");
      assert.equal(toB4, "timeout");
      assert.equal(toB6, "timeout");
    } finally {
      await p.stop();
    }
  });

  test("replacing a policy keeps one program per hook; a family without an address is refused", async () => {
    const before = querySocketPolicy(cgB);
    attachSocketPolicy(cgB, { ipv4: B4 });
    const now = querySocketPolicy(cgB);
    assert.equal(now.length, 10);
    for (const h of now) assert.equal(h.progIds.length, 1, h.attachType);
    assert.notDeepEqual(now, before);
    const t6 = await tcpPort(HOST6);
    const r = await probe({ cgroup: cgB }, [
      { op: "bind", host: "::" },
      { op: "tcp", host: HOST6, port: t6 },
      { op: "bind", host: "0.0.0.0" },
    ]);
    assert.equal(r[0]!.code, "EPERM");
    assert.equal(r[1]!.code, "EPERM");
    assert.equal(r[2]!.address, B4);
  });

  test("the attachment outlives the process that made it; detach removes it and the cgroup can go", async () => {
    const cg = join(contextsCgroupParent(testConfig().cgroupParent), "c");
    createCgroup(cg);
    const mod = new URL("../../src/kernel/bpf/socket-policy.ts", import.meta.url).pathname;
    const script = `const m = await import(${JSON.stringify(mod)}); m.attachSocketPolicy(${JSON.stringify(cg)}, { ipv4: "${C4}", ipv6: "${C6}" });`;
    execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script]);
    const q = querySocketPolicy(cg);
    assert.equal(q.length, 10);
    const r = await probe({ cgroup: cg }, [
      { op: "bind", host: "0.0.0.0" },
      { op: "bind", host: C4 },
      { op: "bind", host: "::" },
      { op: "bind", host: C6 },
      { op: "bind", host: A4 },
    ]);
    assert.deepEqual(
      r.map((x) => x.address ?? x.code),
      [C4, C4, C6, C6, "EPERM"],
    );
    assert.deepEqual(cgroupProcs(cg), []);
    detachSocketPolicy(cg);
    assert.deepEqual(querySocketPolicy(cg), []);
    detachSocketPolicy(cg);
    removeCgroup(cg);
    assert.deepEqual(querySocketPolicy(cg), []);
    detachSocketPolicy(cg);
  });
});
