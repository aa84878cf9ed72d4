/**
 * `netctx demo`: builds a small scene in a throwaway host namespace, shows traffic working and failing where it
 * must, prints what it made, and removes it all.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { printAuditTable } from "../audit/report.ts";
import type { Config } from "../config.ts";
import { createContext, removeContext } from "../engine/contexts.ts";
import { createNetwork, removeNetwork } from "../engine/networks.ts";
import { contextView } from "../engine/views.ts";
import { contextExecArgv } from "../exec/enter.ts";
import { Host } from "../host.ts";
import { cgroup2Root, contextsCgroupParent } from "../kernel/cgroup.ts";
import { createNetns, deleteNetns, netnsPath } from "../kernel/netns.ts";
import { specOf } from "../levels/driver.ts";
import { formatTable } from "../text-table.ts";
import { nsArgv, ping, run } from "./probe.ts";

const OUTSIDE = "demo-outside";
const OUTSIDE_IP = "203.0.113.2";
const UPLINK_IP = "203.0.113.1";
/** Two upstream routers on the host network "shared", both holding the same far address. */
const FAR_IP = "198.51.100.9";
const FAR_PORT = 7001;
const UPSTREAMS = [
  { name: "demo-isp1", ip: "10.88.4.254" },
  { name: "demo-isp2", ip: "10.88.4.253" },
] as const;

interface Check {
  what: string;
  expect: boolean;
  ok: boolean;
  note?: string;
}

export async function runDemo(given: Config): Promise<boolean> {
  // The shared-stack contexts' cgroups (and the loopback publish programs) go under a parent of the demo's own,
  // removed at the end: the throwaway namespace does not cover cgroups.
  const ownParent =
    given.cgroupParent === undefined ? join(cgroup2Root(), `netctx-demo-${process.pid}`) : undefined;
  const config: Config = ownParent
    ? { ...given, cgroupParent: ownParent, publishCgroup: given.publishCgroup ?? ownParent }
    : given;
  const host = Host.open(config);
  const checks: Check[] = [];
  const servers: ChildProcess[] = [];
  const say = (line: string) => process.stdout.write(`${line}\n`);
  try {
    say("netctx demo: a throwaway host namespace; everything below vanishes with it.\n");
    const outside = makeOutside(host);
    say(`outside world: namespace ${OUTSIDE} at ${OUTSIDE_IP}, with no route back to any context subnet`);

    const nets = [
      { name: "front", driver: "bridge", subnets: ["10.88.1.0/24", "fd88:1::/64"], nat: true },
      { name: "back", driver: "routed", subnets: ["10.88.2.0/24", "fd88:2::/64"], nat: false },
      { name: "vault", driver: "bridge", subnets: ["10.88.3.0/24"], internal: true },
      { name: "shared", driver: "host", subnets: ["10.88.4.0/24", "fd88:4::/64"], nat: false },
    ];
    for (const n of nets) {
      createNetwork(host, n);
      say(
        `network ${n.name}: ${n.driver} ${n.subnets.join(" ")}${n.nat ? " nat" : ""}${n.internal ? " internal" : ""}`,
      );
    }
    const ctxs = [
      { name: "web", level: "l2", networks: ["front"], ips: ["10.88.1.10"], mac: "02:00:00:00:01:0a" },
      { name: "db", level: "l2", networks: ["front"] },
      { name: "api", level: "l2", networks: ["back"] },
      { name: "worker", level: "l2", networks: ["back"] },
      { name: "safe", level: "l2", networks: ["vault"] },
      { name: "shop", level: "socket", networks: ["shared"] },
      { name: "blog", level: "socket", networks: ["shared"] },
      { name: "mail", level: "l3", networks: ["shared"], routes: [`default via ${UPSTREAMS[1].ip}`] },
    ];
    for (const c of ctxs) {
      const rec = createContext(host, c);
      say(
        `context ${c.name} (${c.level}) on ${c.networks.join(",")}: ${contextView(host, rec).addresses.join(" ")}`,
      );
    }
    for (const u of UPSTREAMS) servers.push(await startUpstream(host, u.name, u.ip, "nc-shared"));
    // The host's own route to the far address goes through isp1; mail's table sends it through isp2.
    host.rtnl.routeAdd({ dst: `${FAR_IP}/32`, gateway: UPSTREAMS[0].ip, dev: "nc-shared" });
    say(
      `upstreams: ${UPSTREAMS.map((u) => `${u.name} at ${u.ip}`).join(", ")}, both answering on ${FAR_IP}; the host routes it via ${UPSTREAMS[0].name}`,
    );
    const ns = (name: string) => specOf(host.store.getContext(name)!).netns!;
    const inContext = (name: string, argv: string[]) => {
      const rec = host.store.getContext(name)!;
      return contextExecArgv(host, rec, argv);
    };
    const addr = (name: string, family: 4 | 6) =>
      contextView(host, host.store.getContext(name)!, false)
        .addresses.map((a) => a.split("/")[0]!)
        .find((a) => a.includes(":") === (family === 6))!;

    say("\nchecks on the wire:");
    const check = (what: string, expect: boolean, ok: boolean, note?: string) => {
      checks.push({ what, expect, ok, ...(note ? { note } : {}) });
      const pass = ok === expect;
      say(`  ${pass ? "ok  " : "FAIL"} ${what}: ${ok ? "reached" : "blocked"}${note ? ` (${note})` : ""}`);
    };
    check("web -> db over the bridge, IPv4", true, ping(ns("web"), addr("db", 4)).ok);
    check("web -> db over the bridge, IPv6", true, ping(ns("web"), addr("db", 6)).ok);
    check(
      "api -> worker through the host's routing (routed), IPv4",
      true,
      ping(ns("api"), addr("worker", 4)).ok,
    );
    check(
      "api -> worker through the host's routing (routed), IPv6",
      true,
      ping(ns("api"), addr("worker", 6)).ok,
    );
    check("web -> api across networks", true, ping(ns("web"), addr("api", 4)).ok);
    const seen = await sourceSeenOutside(outside, ns("web"));
    check(
      "web -> outside through NAT",
      true,
      seen !== undefined,
      seen ? `outside saw source ${seen}` : undefined,
    );
    check(
      "api -> outside without NAT",
      false,
      ping(ns("api"), OUTSIDE_IP).ok,
      "no route back to 10.88.2.0/24",
    );
    check("safe -> its gateway on an internal network", true, ping(ns("safe"), "10.88.3.1").ok);
    check("safe -> outside from an internal network", false, ping(ns("safe"), OUTSIDE_IP).ok);
    check("safe -> web from an internal network", false, ping(ns("safe"), addr("web", 4)).ok);
    const foreign = run(inContext("shop", nodeArgv(bindScript(addr("blog", 4)))), 15_000);
    check(`shop binds blog's address ${addr("blog", 4)} (socket)`, false, foreign.ok, foreign.output);
    const wildcard = run(inContext("shop", nodeArgv(bindScript("0.0.0.0"))), 15_000);
    check(
      "shop binds 0.0.0.0, narrowed to its own address (socket)",
      true,
      wildcard.ok && wildcard.output === addr("shop", 4),
      `getsockname: ${wildcard.output}`,
    );
    for (const [name, via] of [
      ["mail", UPSTREAMS[1].name],
      ["shop", UPSTREAMS[0].name],
    ] as const) {
      const r = run(inContext(name, nodeArgv(fetchScript(FAR_IP, FAR_PORT))), 15_000);
      const record = host.store.getContext(name)!;
      const level = record.level;
      const own = specOf(record).table;
      const table = own !== undefined ? `its own table ${own}` : "the host's table";
      check(
        `${name} -> ${FAR_IP} by ${table} (${level})`,
        true,
        r.ok && r.output === `${via} saw ${addr(name, 4)}`,
        r.output || undefined,
      );
    }

    say("\ncontexts:");
    say(
      indent(
        formatTable(
          ["NAME", "LEVEL", "NETWORKS", "ADDRESSES", "NETNS / CGROUP"],
          host.store.listContexts().map((c) => {
            const v = contextView(host, c, false);
            const anchor =
              v.netns ?? `${v.cgroup ?? ""}${v.table !== undefined ? ` (table ${v.table})` : ""}`;
            return [v.name, v.level, v.networks.join(","), v.addresses.join(" "), anchor];
          }),
        ),
      ),
    );
    say("\naudit of the scene (netctx audit):");
    const audited = await printAuditTable(host, (line) => say(indent(line)));
    check("audit: each context measures its level's row; promised escapes blocked", true, audited);
    say("\ncleaning up:");
    for (const c of ctxs) removeContext(host, c.name);
    stopUpstreams(host, servers);
    for (const n of nets) removeNetwork(host, n.name);
    // Like the upstreams' veths: gone with the netns, but only a moment later.
    if (host.rtnl.linkGet("demo-up")) host.rtnl.linkDel("demo-up");
    deleteNetns(OUTSIDE);
    const left = host.rtnl.linkList().filter((l) => l.name !== "lo");
    const cgroupsLeft = readdirSync(contextsCgroupParent(config.cgroupParent), {
      withFileTypes: true,
    }).filter((e) => e.isDirectory());
    say(
      `  removed ${ctxs.length} contexts and ${nets.length} networks; links left in the host namespace: ${left.length}; cgroups left: ${cgroupsLeft.length}`,
    );
  } finally {
    stopUpstreams(host, servers);
    host.close();
    if (ownParent) removeDemoCgroupParent(ownParent);
  }
  const failed = checks.filter((c) => c.ok !== c.expect);
  say(`\n${checks.length - failed.length} of ${checks.length} checks behaved as they must.`);
  return failed.length === 0;
}

/** The outside world: a namespace on a veth from the host, that knows no route to the contexts. */
function makeOutside(host: Host): string {
  const path = createNetns(OUTSIDE);
  host.rtnl.linkAdd({ name: "demo-up", kind: "veth", up: true, peer: { name: "eth0", netns: path } });
  host.rtnl.addrAdd("demo-up", `${UPLINK_IP}/24`);
  run(nsArgv(path, ["ip", "link", "set", "lo", "up"]));
  run(nsArgv(path, ["ip", "link", "set", "eth0", "up"]));
  run(nsArgv(path, ["ip", "addr", "add", `${OUTSIDE_IP}/24`, "dev", "eth0"]));
  return netnsPath(OUTSIDE);
}

/** A TCP server outside that answers with the source address it saw; the client connects from inside a context. */
async function sourceSeenOutside(outsideNs: string, fromNs: string): Promise<string | undefined> {
  const server = spawn(
    "nsenter",
    nsArgv(outsideNs, [
      process.execPath,
      "-e",
      `const s=require("net").createServer(c=>{c.end(c.remoteAddress+"\\n");s.close()});s.listen(7000,"${OUTSIDE_IP}",()=>console.log("up"))`,
    ]).slice(1),
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  try {
    await new Promise<void>((resolve) => server.stdout.once("data", () => resolve()));
    const client = run(
      nsArgv(fromNs, [
        process.execPath,
        "-e",
        `const c=require("net").connect(7000,"${OUTSIDE_IP}");c.setTimeout(2000,()=>process.exit(1));c.on("data",d=>{process.stdout.write(d);process.exit(0)});c.on("error",()=>process.exit(1))`,
      ]),
    );
    return client.ok ? client.output.trim() : undefined;
  } finally {
    server.kill();
  }
}

/** An upstream router: a namespace on a veth whose host side is a port of the host network's bridge. */
async function startUpstream(host: Host, name: string, ip: string, bridge: string): Promise<ChildProcess> {
  const path = createNetns(name);
  host.rtnl.linkAdd({ name, kind: "veth", up: true, master: bridge, peer: { name: "eth0", netns: path } });
  run(nsArgv(path, ["ip", "link", "set", "lo", "up"]));
  run(nsArgv(path, ["ip", "link", "set", "eth0", "up"]));
  run(nsArgv(path, ["ip", "addr", "add", `${ip}/24`, "dev", "eth0"]));
  run(nsArgv(path, ["ip", "addr", "add", `${FAR_IP}/32`, "dev", "lo"]));
  const server = spawn(
    "nsenter",
    nsArgv(path, [
      process.execPath,
      "-e",
      `require("net").createServer(c=>c.end("${name} saw "+c.remoteAddress+"\\n")).listen(${FAR_PORT},"${FAR_IP}",()=>console.log("up"))`,
    ]).slice(1),
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await new Promise<void>((resolve) => server.stdout?.once("data", () => resolve()));
  return server;
}

function stopUpstreams(host: Host, servers: ChildProcess[]): void {
  for (const s of servers.splice(0)) s.kill();
  for (const u of UPSTREAMS) {
    // The veth goes with its netns, but asynchronously: delete it first so the link count below is final.
    if (host.rtnl.linkGet(u.name)) host.rtnl.linkDel(u.name);
    deleteNetns(u.name);
  }
}

function removeDemoCgroupParent(parent: string): void {
  try {
    rmdirSync(parent);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}

function nodeArgv(script: string): string[] {
  return [process.execPath, "-e", script];
}

/** Listens on host:0 and prints the address getsockname reports, or the error code. */
function bindScript(host: string): string {
  return `const s=require("net").createServer();s.on("error",e=>{console.log(e.code);process.exit(1)});s.listen(0,"${host}",()=>{console.log(s.address().address);s.close()})`;
}

/** Prints what the server sends. */
function fetchScript(ip: string, port: number): string {
  return `const c=require("net").connect(${port},"${ip}");let d="";c.setTimeout(3000,()=>process.exit(1));c.on("data",x=>{d+=x});c.on("end",()=>{console.log(d.trim());process.exit(0)});c.on("error",()=>process.exit(1))`;
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");
}
