/**
 * The audit's hardening probes (issue 15) against a scene that has what each needs: x and y (l2) on a bridge network
 * with an IPv6 subnet, z (l2) on an internal network, a and s2 (socket) and b (l3, with a default route of its own)
 * on a host network, and a running `netctx serve` for the engine-api probe.
 *  1. Through the real exec sandbox (`netctx audit --json`): every probe is reported with its level's promise and
 *     its evidence, none is inconclusive, and the classes already closed on the tree read "blocked".
 *  2. With the guards removed by hand (probes started without the sandbox, `nft flush ruleset`, accept_ra back on,
 *     b's BPF programs detached, and the engine's socket answered by a stand-in without the peer check): every
 *     promised probe reads "possible", so none of them can pass by being blind; x meanwhile tells y it is no router,
 *     so y's kernel withdraws the route of x's RA again at once and only a watch of y's routes can see it.
 * Both times the host is clean afterwards: no directory left under /var/lib, no socket under /run, none of the
 * probes' files (setuid or not) in /tmp, no link of the netlink-other-netns probe (its markers, or what a probe made
 * through an nsid) in the host's namespace or x's (the shared-stack contexts' target).
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, lstatSync, readdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type AuditReport, runAudit } from "../../src/audit/audit.ts";
import { type EscapeProbe, PROMISED_BLOCKED } from "../../src/audit/expected.ts";
import { Host } from "../../src/host.ts";
import { detachSocketPolicy } from "../../src/kernel/bpf/socket-policy.ts";
import { specOf } from "../../src/levels/driver.ts";
import type { ContextRecord, Level } from "../../src/model/records.ts";
import { inCgroupArgv } from "../utils/cgroup.ts";
import { netctx, netctxOk, type RunningEngine, startEngine } from "../utils/cli.ts";
import { testConfig } from "../utils/config.ts";
import { ipj } from "../utils/kernel-oracle.ts";
import { contextNetns, inNetns } from "../utils/netns.ts";

interface AuditJson {
  contexts: {
    name: string;
    level: Level;
    escapes: { probe: EscapeProbe; result: string; evidence: string; promised: boolean }[];
    ok: boolean;
  }[];
  ok: boolean;
}

/** The probes that make or aim at files on the host (src/audit/host-fs.ts). */
const HOST_FS: EscapeProbe[] = ["host-file-write", "host-daemon-socket", "setuid-file", "block-device"];

const EVERY: EscapeProbe[] = [
  "ptrace-other-context",
  "signal-host-process",
  "abstract-unix-other-context",
  "abstract-unix-host",
  "proc-sys-net-write",
  "engine-api",
  "setns-host-netns",
  "vsock-socket",
  "netlink-other-netns",
  ...HOST_FS,
];

const HARDENING: readonly EscapeProbe[] = [
  ...EVERY,
  "device-table-bypass",
  "rogue-ra",
  "rogue-na",
  "internal-to-host",
  "internal-to-shared-stack",
];

/** What the scene offers each context's probes (see the module comment). */
const EXPECTED_PROBES: Record<string, EscapeProbe[]> = {
  x: [...EVERY, "rogue-ra", "rogue-na"],
  y: [...EVERY, "rogue-ra", "rogue-na"],
  z: [...EVERY, "internal-to-host", "internal-to-shared-stack"],
  a: [...EVERY, "device-table-bypass"],
  s2: [...EVERY, "device-table-bypass"],
  b: [...EVERY, "device-table-bypass"],
};

/**
 * Classes closed on the tree: where promised, they must read "blocked" through the sandbox. When this test was
 * written every class was (the exec sandbox, the engine's peer check, the l3 device guard, RA/NA filtering and
 * accept_ra=0, the internal networks' input rules); a class whose fix is backed out leaves this list.
 */
const CLOSED: readonly EscapeProbe[] = HARDENING;

let engine: RunningEngine;

before(async () => {
  engine = await startEngine();
  netctxOk(
    "network",
    "create",
    "br6",
    "--driver",
    "bridge",
    "--subnet",
    "10.61.0.0/24",
    "--subnet",
    "fd61::/64",
  );
  netctxOk("network", "create", "vault", "--driver", "bridge", "--subnet", "10.62.0.0/24", "--internal");
  netctxOk("network", "create", "hn", "--driver", "host", "--subnet", "10.63.0.0/24");
  netctxOk("create", "x", "--level", "l2", "--network", "br6");
  netctxOk("create", "y", "--level", "l2", "--network", "br6");
  netctxOk("create", "z", "--level", "l2", "--network", "vault");
  netctxOk("create", "a", "--level", "socket", "--network", "hn");
  netctxOk("create", "s2", "--level", "socket", "--network", "hn");
  // A default route of its own (to an address nobody holds): b's table alone cannot reach x.
  netctxOk("create", "b", "--level", "l3", "--network", "hn", "--route", "default via 10.63.0.254");
});

after(async () => {
  netctx("rm", "x", "y", "z", "a", "s2", "b");
  await engine.stop();
});

function table(report: AuditJson | AuditReport): string {
  return report.contexts
    .flatMap((c) =>
      c.escapes
        .filter((e) => HARDENING.includes(e.probe))
        .map((e) => `${c.name}\t${e.probe}\t${e.result}\t${e.promised ? "promised" : ""}\t${e.evidence}`),
    )
    .join("\n");
}

/**
 * Every path the host file system probes name in their evidence (the auditor's directory and socket, the probes'
 * files in /tmp) is gone, and no file of this audit in /tmp carries a setuid or setgid bit.
 */
function assertHostClean(report: AuditJson | AuditReport): void {
  const named = new Set<string>();
  for (const c of report.contexts)
    for (const e of c.escapes)
      if (HOST_FS.includes(e.probe))
        for (const m of e.evidence.matchAll(/\/(?:var\/lib|run|tmp)\/netctx-audit-[\w.-]+/g)) named.add(m[0]);
  // The directory, the socket, and per context two setuid names and a disk node.
  assert.ok(named.size >= 2 + 3 * report.contexts.length, `paths in the evidence: ${[...named].join(" ")}`);
  for (const path of named) assert.equal(existsSync(path), false, `${path} left on the host`);
  // This audit's files only: another audit (a second test run on the machine) may be halfway through its own.
  const runs = new Set([...named].map((p) => p.match(/netctx-audit-([a-z0-9]+)/)?.[1]));
  const setuid = readdirSync("/tmp")
    .filter((n) => runs.has(n.match(/^netctx-audit-([a-z0-9]+)-/)?.[1]))
    .filter((n) => ((lstatSync(`/tmp/${n}`, { throwIfNoEntry: false })?.mode ?? 0) & 0o6000) !== 0);
  assert.deepEqual(setuid, [], "setuid files in /tmp");
  // The netlink-other-netns markers, named in the evidence, and whatever a probe made beside them.
  const tags = new Set<string>();
  for (const c of report.contexts)
    for (const e of c.escapes)
      if (e.probe === "netlink-other-netns")
        for (const m of e.evidence.matchAll(/marker (nk[0-9a-f]{6})[0-9a-z]+m /g)) tags.add(m[1]!);
  assert.ok(tags.size > 0, "the nsid probes name their markers");
  const tagged = (netns?: string) =>
    ipj<{ ifname: string }>(["link", "show"], netns)
      .map((l) => l.ifname)
      .filter((n) => [...tags].some((t) => n.startsWith(t)));
  assert.deepEqual(tagged(), [], "nsid probe links left in the host's netns");
  assert.deepEqual(tagged(contextNetns("x")), [], "nsid probe links left in x's netns");
}

test("through the sandbox every hardening probe is reported with its promise and evidence", () => {
  const started = Date.now();
  const r = netctx("audit", "--json");
  const secs = (Date.now() - started) / 1000;
  assert.ok(r.stdout.trim().startsWith("{"), `no JSON: ${r.stderr}${r.stdout}`);
  const report = JSON.parse(r.stdout) as AuditJson;
  console.log(`audit took ${secs.toFixed(1)} s\n${table(report)}`);
  for (const [name, probes] of Object.entries(EXPECTED_PROBES)) {
    const c = report.contexts.find((k) => k.name === name);
    assert.ok(c, `${name} audited`);
    const got = c.escapes.filter((e) => HARDENING.includes(e.probe));
    assert.deepEqual(got.map((e) => e.probe).sort(), [...probes].sort(), `${name}'s hardening probes`);
    for (const e of got) {
      assert.equal(e.promised, PROMISED_BLOCKED[c.level].includes(e.probe), `${name} ${e.probe} promise`);
      assert.ok(e.evidence.length > 10, `${name} ${e.probe} evidence`);
      // A probe that cannot show either way on this scene is a broken probe.
      assert.notEqual(e.result, "inconclusive", `${name} ${e.probe}: ${e.evidence}`);
      if (CLOSED.includes(e.probe) && e.promised)
        assert.equal(e.result, "blocked", `${name} ${e.probe}: ${e.evidence}`);
    }
  }
  // The probes that need no guard at all: an l2 context's abstract namespace is its netns's own.
  for (const name of ["x", "y", "z"]) {
    const c = report.contexts.find((k) => k.name === name)!;
    for (const p of ["abstract-unix-other-context", "abstract-unix-host"])
      assert.equal(c.escapes.find((e) => e.probe === p)?.result, "blocked", `${name} ${p}`);
  }
  assertHostClean(report);
  assert.ok(secs < 30, `audit took ${secs}s`);
});

/** Probes and markers started as before the sandbox: l2 by nsenter alone, shared-stack by a move into the cgroup. */
function bareExec(record: ContextRecord, command: string[]): string[] {
  const spec = specOf(record);
  return record.level === "l2" ? inNetns(spec.netns!, command) : inCgroupArgv(spec.cgroup!, command);
}

/** The engine's API as it answered before its peer check: to anybody. */
async function unguardedEngine(path: string): Promise<Server> {
  const server = createServer((req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(req.url === "/v1/health" ? { ok: true, pid: process.pid } : { settled: true }));
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

function inContext(name: string, argv: string[]): void {
  const inside = inNetns(contextNetns(name), argv);
  execFileSync(inside[0]!, inside.slice(1));
}

/** Context `name`'s eth0: its link-local address and MAC. */
function eth0Of(name: string): { ll: string; mac: string } {
  const [dev] = ipj<{ address: string; addr_info: { family: string; scope: string; local: string }[] }>(
    ["addr", "show", "dev", "eth0"],
    contextNetns(name),
  );
  const ll = dev?.addr_info.find((a) => a.family === "inet6" && a.scope === "link")?.local;
  assert.ok(dev && ll, `${name}'s link-local address`);
  return { ll, mac: dev.address };
}

/**
 * Every 10 ms a Neighbour Advertisement from argv[1] (link-local, eth0) to argv[2] for argv[1] itself, with the
 * override flag and without the router flag: what x's kernel answers y's neighbour probes with (x does not forward).
 */
const NOT_A_ROUTER_PY = `
import socket, struct, sys, time
ll, peer, mac = sys.argv[1:4]
idx = socket.if_nametoindex("eth0")
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
s.bind((ll, 0, 0, idx))
na = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + socket.inet_pton(socket.AF_INET6, ll)
na += struct.pack("!BB", 2, 1) + bytes.fromhex(mac.replace(":", ""))
while True:
    s.sendto(na, (peer, 0, 0, idx))
    time.sleep(0.01)
`;

test("with the guards removed by hand every promised hardening probe reads possible", async () => {
  execFileSync("nft", ["flush", "ruleset"]);
  for (const name of ["x", "y"]) {
    inContext(name, ["sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=1"]);
    inContext(name, ["sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra_defrtr=1"]);
  }
  // x keeps telling y it is no router, as x's kernel answers y's neighbour probes: y withdraws the route of x's RA
  // within 10 ms (RFC 4861 7.2.5), as it did by chance when a probe of x's address, left over from the first test,
  // fell just after the RA (1 run in 2-3). The audit must see the route all the same (its route notifications),
  // not only in a reading of y's routes after every probe has answered.
  const [x, y] = [eth0Of("x"), eth0Of("y")];
  const notARouter = inNetns(contextNetns("x"), ["python3", "-c", NOT_A_ROUTER_PY, x.ll, y.ll, x.mac]);
  const standIn = join(process.env.NETCTX_TEST_SCRATCH!, "unguarded.sock");
  const engineStandIn = await unguardedEngine(standIn);
  // The audit looks for the engine where the host's config says it listens.
  const host = Host.open(testConfig({ socketPath: standIn }));
  const denial = spawn(notARouter[0]!, notARouter.slice(1), { stdio: "ignore" });
  try {
    detachSocketPolicy(specOf(host.store.getContext("b")!).cgroup!);
    const report = await runAudit(host, [], { exec: bareExec });
    console.log(table(report));
    assert.equal(denial.exitCode, null, "x's NA sender ran through the audit");
    // Checked first: the probes did write, chmod and mknod on the host this time.
    assertHostClean(report);
    for (const [name, probes] of Object.entries(EXPECTED_PROBES)) {
      const c = report.contexts.find((k) => k.name === name)!;
      for (const p of probes) {
        const e = c.escapes.find((k) => k.probe === p);
        assert.ok(e, `${name} ${p} reported`);
        if (e.promised) assert.equal(e.result, "possible", `${name} ${p}: ${e.evidence}`);
      }
    }
    // The socket level's bypass is reported, not promised: with its table gone b's is the same measurement.
    assert.equal(
      report.contexts.find((c) => c.name === "a")?.escapes.find((e) => e.probe === "device-table-bypass")
        ?.result,
      "possible",
    );
  } finally {
    denial.kill();
    host.close();
    engineStandIn.close();
  }
});
