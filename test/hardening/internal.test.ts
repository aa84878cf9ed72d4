/**
 * Issue 15, escape 10: `--internal` means internal. A context on an internal network reaches its gateway and its
 * network's other contexts and nothing else, whatever routes its root adds: not the host's other addresses (another
 * network's gateway, a host network's gateway) and not the addresses of shared-stack contexts, which are local
 * deliveries on the host (the input hook), not forwarded traffic. IPv4 and IPv6, bridge and routed networks; ND and
 * ARP to the gateway keep working; a network that is not internal is not affected; all of it survives
 * `nft flush ruleset` and `netctx repair`. Proof on the wire: TCP connects from inside the contexts.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, test } from "node:test";
import { netctxOk } from "../utils/cli.ts";
import { contextNetns } from "../utils/netns.ts";
import { type ProbePlace, startServing } from "../utils/socket-probe.ts";
import { connectFrom } from "./frames.ts";

const PORT = 7070;
const at = (ip: string, port = PORT) => (ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);

/** The shared-stack context's addresses, and the host addresses of the other networks (their gateways). */
const SHARED = { v4: "10.77.0.10", v6: "fd77::10" };
const HOST_ADDRESSES = ["10.77.0.1", "fd77::1", "10.78.0.1", "fd78::1"];

/** An internal network of each driver with two contexts: `a` probes, `b` listens. */
const INTERNAL = [
  { net: "ibr", driver: "bridge", v4: "10.79.0", v6: "fd79::", a: "iz", b: "iw" },
  { net: "irt", driver: "routed", v4: "10.80.0", v6: "fd80::", a: "rz", b: "rw" },
] as const;

const stops: (() => void)[] = [];

/** A TCP listener on [::]:PORT (v4 too) in the host namespace, or where told; its stop() goes to `stops`. */
async function listener(at?: ProbePlace): Promise<void> {
  const served = await startServing({ op: "serve", proto: "tcp", port: PORT }, at);
  stops.push(() => served.child.kill());
}

before(async () => {
  netctxOk(
    "network",
    "create",
    "hn",
    "--driver",
    "host",
    "--subnet",
    "10.77.0.0/24",
    "--subnet",
    "fd77::/64",
  );
  netctxOk("create", "ss", "--level", "socket", "--network", "hn", "--ip", SHARED.v4, "--ip", SHARED.v6);
  netctxOk(
    "network",
    "create",
    "open",
    "--driver",
    "bridge",
    "--subnet",
    "10.78.0.0/24",
    "--subnet",
    "fd78::/64",
  );
  netctxOk("create", "of", "--level", "l2", "--network", "open");
  for (const n of INTERNAL) {
    netctxOk(
      "network",
      "create",
      n.net,
      "--driver",
      n.driver,
      "--subnet",
      `${n.v4}.0/24`,
      "--subnet",
      `${n.v6}/64`,
      "--internal",
    );
    netctxOk("create", n.a, "--level", "l2", "--network", n.net, "--ip", `${n.v4}.10`, "--ip", `${n.v6}10`);
    netctxOk("create", n.b, "--level", "l2", "--network", n.net, "--ip", `${n.v4}.11`, "--ip", `${n.v6}11`);
    // Root inside gives itself the way out that --internal withheld. (The listener too: an internal routed
    // context is given a route to its gateway only, so without one of its own it could not answer the prober.)
    for (const ctx of [n.a, n.b])
      for (const [family, gw] of [
        ["-4", `${n.v4}.1`],
        ["-6", `${n.v6}1`],
      ] as const)
        netctxOk("exec", ctx, "--", "ip", family, "route", "replace", "default", "via", gw);
    await listener({ netns: contextNetns(n.b) });
  }
  // One listener on the host's wildcard: every local address answers, the shared-stack context's among them.
  await listener();
});

after(() => {
  for (const stop of stops) stop();
});

function reachable(ctx: string, ips: string[]): Record<string, boolean> {
  return connectFrom(
    ctx,
    ips.map((ip) => at(ip)),
  );
}

function checkInternal(): void {
  for (const n of INTERNAL) {
    // Forget the gateway's MAC first: ARP and ND for it must still work.
    execFileSync("ip", ["-n", `netctx-${n.a}`, "neigh", "flush", "all"]);
    const inside = [`${n.v4}.1`, `${n.v6}1`, `${n.v4}.11`, `${n.v6}11`];
    const outside = [SHARED.v4, SHARED.v6, ...HOST_ADDRESSES];
    const got = reachable(n.a, [...inside, ...outside]);
    const want = Object.fromEntries([
      ...inside.map((ip) => [at(ip), true]),
      ...outside.map((ip) => [at(ip), false]),
    ]);
    assert.deepEqual(got, want, `${n.driver} network ${n.net}`);
  }
}

test("a context on an internal network reaches its gateway and its network, not the host's other addresses", () => {
  checkInternal();
});

test("a context on a network that is not internal still reaches the host's addresses", () => {
  const got = reachable("of", [SHARED.v4, SHARED.v6, "10.78.0.1", "10.77.0.1"]);
  assert.ok(
    Object.values(got).every((v) => v),
    JSON.stringify(got),
  );
});

test("the host still reaches the internal contexts, which answer their gateway", () => {
  for (const n of INTERNAL) {
    for (const ip of [`${n.v4}.10`, `${n.v6}10`])
      execFileSync("ping", ["-n", "-q", "-c", "1", "-W", "1", ip], { stdio: "ignore" });
  }
});

test("after `nft flush ruleset` and `netctx repair` it holds again", () => {
  execFileSync("nft", ["flush", "ruleset"]);
  netctxOk("repair");
  checkInternal();
});

test("teardown", () => {
  netctxOk("rm", "--force", "ss", "of", ...INTERNAL.flatMap((n) => [n.a, n.b]));
  netctxOk("network", "rm", "hn", "open", ...INTERNAL.map((n) => n.net));
});
