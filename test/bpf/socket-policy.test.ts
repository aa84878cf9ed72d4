import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import dgram from "node:dgram";
import net from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  attachSocketPolicy,
  bpfAvailable,
  detachSocketPolicy,
  querySocketPolicy,
} from "../../src/kernel/bpf/socket-policy.ts";
import { cgroupProcs, contextsCgroupParent, createCgroup, removeCgroup } from "../../src/kernel/cgroup.ts";
import {
  A4,
  A6,
  B4,
  B6,
  C4,
  C6,
  HOST4,
  HOST6,
  inCgroupArgv,
  probe,
  probeArgv,
  setUpHostBridge,
  startProbe,
} from "./helpers.ts";

let cgA = "";
let cgB = "";
const tcpPeers: string[] = [];
const udpPeers: string[] = [];
const servers: { close(): void }[] = [];

async function tcpListener(host: string): Promise<number> {
  const server = net.createServer((s) => {
    tcpPeers.push(s.remoteAddress ?? "");
    s.resume();
    s.on("end", () => s.end());
  });
  await new Promise<void>((resolve) => server.listen({ host, port: 0 }, resolve));
  servers.push(server);
  return (server.address() as net.AddressInfo).port;
}

async function udpListener(host: string): Promise<number> {
  const s = dgram.createSocket(net.isIPv6(host) ? "udp6" : "udp4");
  s.on("message", (_m, rinfo) => udpPeers.push(rinfo.address));
  await new Promise<void>((resolve) => s.bind(0, host, resolve));
  servers.push(s);
  return s.address().port;
}

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}

/** A TCP connect from the test process (outside every context) with a short timeout. */
function connectFromHost(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 800 });
    s.once("connect", () => {
      s.destroy();
      resolve("connected");
    });
    s.once("timeout", () => {
      s.destroy();
      resolve("timeout");
    });
    s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
  });
}

describe("socket policy on a context cgroup", () => {
  before(() => {
    assert.deepEqual(bpfAvailable(), { ok: true });
    setUpHostBridge();
    cgA = join(contextsCgroupParent(), "a");
    cgB = join(contextsCgroupParent(), "b");
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

  test("bind: own address ok, other context's and loopback EPERM, wildcard narrowed (v4 and v6)", async () => {
    const r = await probe(cgA, [
      { op: "bind", host: A4 },
      { op: "bind", host: B4 },
      { op: "bind", host: "0.0.0.0" },
      { op: "bind", host: "127.0.0.1" },
      { op: "bind", host: A6 },
      { op: "bind", host: B6 },
      { op: "bind", host: "::" },
      { op: "bind", host: "::1" },
      { op: "bind", host: `::ffff:${B4}` },
    ]);
    assert.equal(r[0]!.ok, true);
    assert.equal(r[0]!.address, A4);
    assert.equal(r[1]!.code, "EPERM");
    assert.equal(r[2]!.ok, true);
    assert.equal(r[2]!.address, A4);
    assert.equal(r[3]!.code, "EPERM");
    assert.equal(r[4]!.address, A6);
    assert.equal(r[5]!.code, "EPERM");
    assert.equal(r[6]!.address, A6);
    assert.equal(r[7]!.code, "EPERM");
    assert.equal(r[8]!.code, "EPERM", "a v4-mapped bind on a v6 socket must not slip past the bind6 hook");
  });

  test("outgoing TCP and UDP (unconnected and connected) leave with the context's address", async () => {
    const t4 = await tcpListener(HOST4);
    const t6 = await tcpListener(HOST6);
    const u4 = await udpListener(HOST4);
    const u6 = await udpListener(HOST6);
    const r = await probe(cgA, [
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
    await waitFor(() => tcpPeers.length >= 2 && udpPeers.length >= 3);
    assert.deepEqual(tcpPeers.sort(), [A4, A6].sort());
    assert.deepEqual(udpPeers.sort(), [A4, A4, A6].sort());
  });

  test("raw and ping sockets are refused; the socket mark is the context's fwmark", async () => {
    const r = await probe(cgA, [
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
    const [r] = await probe(cgA, [
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
    const p = startProbe(inCgroupArgv(cgA, probeArgv([{ op: "listen-nobind" }, { op: "wait" }])));
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
    assert.equal(now.length, 8);
    for (const h of now) assert.equal(h.progIds.length, 1, h.attachType);
    assert.notDeepEqual(now, before);
    const t6 = await tcpListener(HOST6);
    const r = await probe(cgB, [
      { op: "bind", host: "::" },
      { op: "tcp", host: HOST6, port: t6 },
      { op: "bind", host: "0.0.0.0" },
    ]);
    assert.equal(r[0]!.code, "EPERM");
    assert.equal(r[1]!.code, "EPERM");
    assert.equal(r[2]!.address, B4);
  });

  test("the attachment outlives the process that made it; detach removes it and the cgroup can go", async () => {
    const cg = join(contextsCgroupParent(), "c");
    createCgroup(cg);
    const mod = new URL("../../src/kernel/bpf/socket-policy.ts", import.meta.url).pathname;
    const script = `const m = await import(${JSON.stringify(mod)}); m.attachSocketPolicy(${JSON.stringify(cg)}, { ipv4: "${C4}", ipv6: "${C6}" });`;
    execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script]);
    const q = querySocketPolicy(cg);
    assert.equal(q.length, 8);
    const r = await probe(cg, [
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
