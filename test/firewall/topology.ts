/**
 * Test topology built with plain `ip` inside the test's throwaway host namespace:
 *   bridge br-front 10.50.0.1/24 fd50::1/64 with contexts c1 (.2/::2) and c2 (.3/::3)
 *   outside netns `out` behind veth v-out: host 10.200.0.1/24 fd00:200::1/64, out 10.200.0.2 fd00:200::2,
 *   with no route back to the contexts, so only masquerade lets replies return.
 * Optional routed contexts r1 (10.60.0.5) and r2 (10.60.0.6), each with a host-side veth and a /32 host route.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { insideSandbox } from "../../src/sandbox.ts";

export function sh(cmd: string): string {
  return execFileSync("sh", ["-ec", cmd], { encoding: "utf8" });
}

function ctx(ns: string, host: string, v4: string, v6: string, master: string): string {
  return `
ip netns add ${ns}
ip link add ${host} type veth peer name eth0 netns ${ns}
ip link set ${host} master ${master} up
ip -n ${ns} link set lo up
ip -n ${ns} addr add ${v4}/24 dev eth0
ip -n ${ns} addr add ${v6}/64 dev eth0 nodad
ip -n ${ns} link set eth0 up
ip -n ${ns} route add default via 10.50.0.1
ip -n ${ns} -6 route add default via fd50::1
`;
}

export function buildTopology(): void {
  if (!insideSandbox()) throw new Error("kernel tests must run through npm test (throwaway namespace)");
  sh(`
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw net.ipv6.conf.all.forwarding=1
ip link add br-front type bridge
ip addr add 10.50.0.1/24 dev br-front
ip addr add fd50::1/64 dev br-front nodad
ip link set br-front up
${ctx("c1", "v-c1", "10.50.0.2", "fd50::2", "br-front")}
${ctx("c2", "v-c2", "10.50.0.3", "fd50::3", "br-front")}
ip netns add out
ip link add v-out type veth peer name eth0 netns out
ip addr add 10.200.0.1/24 dev v-out
ip addr add fd00:200::1/64 dev v-out nodad
ip link set v-out up
ip -n out link set lo up
ip -n out addr add 10.200.0.2/24 dev eth0
ip -n out addr add fd00:200::2/64 dev eth0 nodad
ip -n out link set eth0 up
`);
}

/** Routed contexts: no bridge, each context's host-side veth carries a /32 route (like CNI ptp). */
export function buildRouted(): void {
  for (const [ns, host, addr] of [
    ["r1", "v-r1", "10.60.0.5"],
    ["r2", "v-r2", "10.60.0.6"],
  ] as const) {
    sh(`
ip netns add ${ns}
ip link add ${host} type veth peer name eth0 netns ${ns}
ip addr add 10.60.0.1/32 dev ${host}
ip link set ${host} up
ip route add ${addr}/32 dev ${host}
ip -n ${ns} link set lo up
ip -n ${ns} addr add ${addr}/32 dev eth0
ip -n ${ns} link set eth0 up
ip -n ${ns} route add 10.60.0.1/32 dev eth0
ip -n ${ns} route add default via 10.60.0.1
`);
  }
}

export function ping(ns: string | null, addr: string): boolean {
  const argv = ["ping", "-c1", "-W1", "-n", "-q", addr];
  const r = spawnSync(ns ? "ip" : argv[0]!, ns ? ["netns", "exec", ns, ...argv] : argv.slice(1), {
    stdio: "ignore",
  });
  return r.status === 0;
}

/** A TCP server in `ns` answering every connection with the peer address it saw, then closing. */
export async function startEcho(ns: string, port = 7777): Promise<ChildProcess> {
  const script = `require("net").createServer((s) => s.end(s.remoteAddress + "\\n")).listen(${port}, "::", () => console.log("ready"))`;
  const child = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`echo server exited with ${code}`)));
    child.stdout?.once("data", () => resolve());
  });
  return child;
}

/** The peer address the echo server saw for a connection from `ns`, or null when no answer came. */
export function echoFrom(ns: string, addr: string, port = 7777): string | null {
  const r = spawnSync(
    "ip",
    ["netns", "exec", ns, "timeout", "1", "bash", "-c", `exec 3<>/dev/tcp/${addr}/${port}; cat <&3`],
    { encoding: "utf8" },
  );
  if (r.status !== 0) return null;
  return r.stdout.trim().replace(/^::ffff:/, "");
}
