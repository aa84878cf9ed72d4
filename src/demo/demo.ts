/**
 * `netctx demo`: builds a small scene in a throwaway host namespace, shows traffic working and failing where it
 * must, prints what it made, and removes it all.
 */
import { spawn } from "node:child_process";
import { formatTable } from "../cli/output.ts";
import { createContext, removeContext } from "../engine/contexts.ts";
import { createNetwork, removeNetwork } from "../engine/networks.ts";
import { contextView } from "../engine/views.ts";
import { Host } from "../host.ts";
import { createNetns, deleteNetns, netnsPath } from "../kernel/netns.ts";
import { specOf } from "../levels/driver.ts";
import { nsArgv, ping, run } from "./probe.ts";

const OUTSIDE = "demo-outside";
const OUTSIDE_IP = "203.0.113.2";
const UPLINK_IP = "203.0.113.1";

interface Check {
  what: string;
  expect: boolean;
  ok: boolean;
  note?: string;
}

export async function runDemo(): Promise<boolean> {
  const host = Host.open();
  const checks: Check[] = [];
  const say = (line: string) => process.stdout.write(`${line}\n`);
  try {
    say("netctx demo: a throwaway host namespace; everything below vanishes with it.\n");
    const outside = makeOutside(host);
    say(`outside world: namespace ${OUTSIDE} at ${OUTSIDE_IP}, with no route back to any context subnet`);

    const nets = [
      { name: "front", driver: "bridge", subnets: ["10.88.1.0/24", "fd88:1::/64"], nat: true },
      { name: "back", driver: "routed", subnets: ["10.88.2.0/24", "fd88:2::/64"], nat: false },
      { name: "vault", driver: "bridge", subnets: ["10.88.3.0/24"], internal: true },
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
    ];
    for (const c of ctxs) {
      const rec = createContext(host, c);
      say(
        `context ${c.name} (${c.level}) on ${c.networks.join(",")}: ${contextView(host, rec).addresses.join(" ")}`,
      );
    }
    const ns = (name: string) => specOf(host.store.getContext(name)!).netns!;
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

    say("\ncontexts:");
    say(
      indent(
        formatTable(
          ["NAME", "LEVEL", "NETWORKS", "ADDRESSES", "NETNS"],
          host.store.listContexts().map((c) => {
            const v = contextView(host, c, false);
            return [v.name, v.level, v.networks.join(","), v.addresses.join(" "), v.netns ?? ""];
          }),
        ),
      ),
    );
    say("\ncleaning up:");
    for (const c of ctxs) removeContext(host, c.name);
    for (const n of nets) removeNetwork(host, n.name);
    deleteNetns(OUTSIDE);
    const left = host.rtnl.linkList().filter((l) => l.name !== "lo");
    say(
      `  removed ${ctxs.length} contexts and ${nets.length} networks; links left in the host namespace: ${left.length}`,
    );
  } finally {
    host.close();
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

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");
}
