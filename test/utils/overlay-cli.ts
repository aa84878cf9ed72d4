/**
 * Helpers for overlay tests that drive test hosts (test/utils/cluster.ts) through the netctx CLI: results that must
 * succeed, polling, network listings, contexts with their addresses, pings from inside a context, the VXLAN device's
 * counters and routes.
 */
import assert from "node:assert/strict";
import type { ContextView } from "../../src/engine/views.ts";
import { type CliResult, NETCTX } from "./cli.ts";
import type { TestHost } from "./cluster.ts";
import type { Json } from "./kernel-oracle.ts";
import { type ProbeOp, type ProbeResult, probeArgv, type RunningProbe, startProbe } from "./socket-probe.ts";
import { sleep } from "./wait.ts";

export function ok(r: CliResult, what: string): string {
  assert.equal(r.code, 0, `${what}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** The one line of a failure's stderr (asserting it is one). */
export function oneLine(r: CliResult): string {
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line expected: ${r.stderr}`);
  return lines[0]!;
}

export function run(h: TestHost, argv: string[]): string {
  const r = h.run(argv);
  if (r.code !== 0) throw new Error(`${h.name}: ${argv.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

export const ipj = (h: TestHost, args: string[]): Json[] => JSON.parse(run(h, ["ip", "-j", ...args]) || "[]");

export async function until(
  what: string,
  read: () => boolean | Promise<boolean>,
  timeoutMs: number,
): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await read()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(100);
  }
}

export async function listed(h: TestHost, name: string): Promise<boolean> {
  const r = await h.netctx("network", "ls", "--json");
  return r.code === 0 && (JSON.parse(r.stdout) as { name: string }[]).some((n) => n.name === name);
}

/** `network create NAME --driver overlay ARGS` on `on`, then listed on every host of `hosts`. */
export async function createOverlay(
  on: TestHost,
  hosts: readonly TestHost[],
  name: string,
  ...args: string[]
): Promise<void> {
  ok(await on.netctx("network", "create", name, "--driver", "overlay", ...args), `create ${name}`);
  for (const h of hosts) await until(`${name} on ${h.name}`, () => listed(h, name), 8000);
}

export interface Made {
  host: TestHost;
  name: string;
  v4: string;
  v6: string | undefined;
}

export function madeOf(h: TestHost, view: ContextView): Made {
  const bare = view.addresses.map((a) => a.split("/")[0]!);
  return {
    host: h,
    name: view.name,
    v4: bare.find((a) => !a.includes(":"))!,
    v6: bare.find((a) => a.includes(":")),
  };
}

export async function createContext(
  h: TestHost,
  name: string,
  level: string,
  network: string,
): Promise<Made> {
  const out = ok(
    await h.netctx("create", name, "--level", level, "--network", network, "--json"),
    `create ${name} on ${h.name}`,
  );
  return madeOf(h, JSON.parse(out) as ContextView);
}

/** A context as `inspect` shows it (after an apply made it). */
export async function inspected(h: TestHost, name: string): Promise<Made> {
  const r = JSON.parse(ok(await h.netctx("ls", "--json"), "ls")) as ContextView[];
  const view = r.find((v) => v.name === name);
  assert.ok(view, `${name} on ${h.name}`);
  return madeOf(h, view);
}

export async function pingFrom(m: Made, address: string, tries = 3, count = 1): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    const r = await m.host.netctx(
      "exec",
      m.name,
      "--",
      "ping",
      "-n",
      "-q",
      "-c",
      String(count),
      "-i",
      "0.2",
      "-W",
      "1",
      address,
    );
    if (r.code === 0) return true;
  }
  return false;
}

/** The packets a device of h has sent. */
export function txPackets(h: TestHost, dev: string): number {
  const [link] = ipj(h, ["-s", "link", "show", dev]);
  return Number((link as { stats64: { tx: { packets: number } } }).stats64.tx.packets);
}

/** The blocks of an overlay network as etcd has them, asked on h. */
export async function blocksOf(
  h: TestHost,
  network: string,
): Promise<{ cidr: string; node: string; orphanedSince?: string }[]> {
  const view = JSON.parse(ok(await h.netctx("network", "inspect", network, "--json"), "inspect")) as {
    blocks?: { cidr: string; node: string; orphanedSince?: string }[];
  };
  return view.blocks ?? [];
}

/** argv run by the host's netctx in context m (its whole confinement, whatever its level), outside the engine. */
export function execArgv(m: Made, argv: string[]): string[] {
  const h = m.host;
  return h.argv([
    "env",
    "-u",
    "NETCTX_SOCKET",
    `NETCTX_STATE_DIR=${h.stateDir}`,
    `NETCTX_CGROUP_PARENT=${h.cgroupParent}`,
    NETCTX,
    "exec",
    m.name,
    "--",
    ...argv,
  ]);
}

function probeArgvIn(m: Made) {
  return (ops: ProbeOp[]) => execArgv(m, probeArgv(ops));
}

/**
 * A TCP server in context m (on its addresses, each port of `ports`) answering each connection with the peer's
 * address; stop() ends it. The caller ends it (or adopts its child into the cluster, which ends it).
 */
export async function serveIn(m: Made, ...ports: number[]): Promise<RunningProbe> {
  const hosts = [m.v4, ...(m.v6 ? [m.v6] : [])];
  const ops: ProbeOp[] = ports.map((port) => ({ op: "serve", proto: "tcp", port, hosts }));
  const p = startProbe(probeArgvIn(m)([...ops, { op: "wait" }]));
  for (const _ of ports) {
    const ready = await p.next();
    assert.ok(ready.ok, JSON.stringify(ready));
  }
  return p;
}

/** Connect from context m to host:port; the server's answer (the address it saw us from). */
export async function tcpFrom(m: Made, host: string, port: number, timeoutMs = 3000): Promise<ProbeResult> {
  const p = startProbe(probeArgvIn(m)([{ op: "tcp", host, port, timeoutMs }]));
  const r = await p.next();
  await p.stop();
  return r;
}
