/**
 * Published ports on the wire: from an "outside" namespace to the host's uplink (v4, v6, udp), hairpin from a
 * neighbour on the same bridge, from the host itself, and from the host's loopback through the cgroup connect
 * hook. The nft side is checked with nft -j: fixed rule count, elements removed on rm, conflicts change nothing.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { loopbackProgramNames } from "../../src/kernel/bpf/publish-loopback.ts";
import { netctx, netctxJson, netctxOk } from "../utils/cli.ts";
import { testConfig } from "../utils/config.ts";
import { nftTable, nftRuleCount as ruleCount } from "../utils/kernel-oracle.ts";
import { addVethNetns, netnsPath } from "../utils/netns.ts";
import { must } from "../utils/shell.ts";
import { type ProbeOp, probeSync, startServing } from "../utils/socket-probe.ts";

const servers: ChildProcess[] = [];
const CLIENT_CG = join(process.env.NETCTX_CGROUP_PARENT ?? "/nonexistent", "client");

/** A server in netns `ns` answering "TEXT from PEER". */
async function serve(ns: string, proto: "tcp" | "udp", port: number, text: string): Promise<void> {
  const served = await startServing(
    { op: "serve", proto, port, answer: `${text} from ` },
    { netns: netnsPath(ns) },
  );
  servers.push(served.child);
}

/** The answer, or null when none came (refused, dropped, timed out). Retries once for a slow start under load. */
function get(
  ns: string | undefined,
  proto: "tcp" | "udp",
  host: string,
  port: number,
  cgroup?: string,
): string | null {
  const op: ProbeOp =
    proto === "tcp"
      ? { op: "tcp", host, port, timeoutMs: 2000 }
      : { op: "udp", host, port, connect: true, reply: true };
  for (let i = 0; i < 2; i++) {
    const [r] = probeSync({ netns: ns && netnsPath(ns), cgroup }, [op]).results;
    if (r?.ok) return r.data ?? "";
  }
  return null;
}

interface NftElem {
  map: string;
  key: string;
  context: string;
}

function publishElements(): NftElem[] {
  const out: NftElem[] = [];
  for (const o of nftTable()) {
    const m = o["map"] as { name: string; elem?: unknown[] } | undefined;
    if (!m?.name.startsWith("pub")) continue;
    for (const e of (m.elem ?? []) as [
      { elem: { val: { concat: unknown[] }; comment?: string } },
      unknown,
    ][]) {
      out.push({ map: m.name, key: e[0].elem.val.concat.join(" . "), context: e[0].elem.comment ?? "" });
    }
  }
  return out;
}

before(async () => {
  // The "outside": a namespace on the host's uplink 198.51.100.1 / fd51::1, plus second host addresses
  // 203.0.113.1 and fd53::1 on the same link to show that a host-address publication answers only on its address.
  addVethNetns({
    name: "outside",
    hostIfname: "ncup0",
    hostAddresses: ["198.51.100.1/24", "203.0.113.1/24", "fd51::1/64", "fd53::1/64"],
    addresses: ["198.51.100.2/24", "203.0.113.2/24", "fd51::2/64", "fd53::2/64"],
  });
  netctxOk(
    "network",
    "create",
    "front",
    "--driver",
    "bridge",
    "--subnet",
    "10.60.0.0/24",
    "--subnet",
    "fd60::/64",
  );
  netctxOk(
    "create",
    "web",
    "--level",
    "l2",
    "--network",
    "front",
    "--ip",
    "10.60.0.10",
    "--publish",
    "8080:80",
    "--publish",
    "5353:53/udp",
    "--publish",
    "198.51.100.1:8082:80",
    "--publish",
    "[fd51::1]:8083:80",
  );
  netctxOk("create", "peer", "--level", "l2", "--network", "front");
  await serve("netctx-web", "tcp", 80, "web");
  await serve("netctx-web", "udp", 53, "webudp");
  mkdirSync(CLIENT_CG, { recursive: true });
});

after(() => {
  for (const s of servers) if (s.pid !== undefined && s.exitCode === null) process.kill(s.pid);
  try {
    rmdirSync(CLIENT_CG);
  } catch {}
  netctx("rm", "web", "peer", "many");
});

test("from outside to the host's uplink, v4 and v6, reaches the context with the client's own address", () => {
  assert.equal(get("outside", "tcp", "198.51.100.1", 8080), "web from 198.51.100.2");
  assert.equal(get("outside", "tcp", "fd51::1", 8080), "web from fd51::2");
  assert.equal(get("outside", "tcp", "198.51.100.1", 8081), null, "an unpublished port stays closed");
});

test("udp is published too", () => {
  assert.equal(get("outside", "udp", "198.51.100.1", 5353), "webudp from 198.51.100.2");
  assert.equal(get("outside", "udp", "fd51::1", 5353), "webudp from fd51::2");
});

test("a publication on one host address answers only there", () => {
  assert.equal(get("outside", "tcp", "198.51.100.1", 8082), "web from 198.51.100.2");
  assert.equal(get("outside", "tcp", "203.0.113.1", 8082), null);
  assert.equal(get("outside", "tcp", "203.0.113.1", 8080), "web from 203.0.113.2");
});

test("a publication on one IPv6 host address answers only there", () => {
  assert.equal(get("outside", "tcp", "fd51::1", 8083), "web from fd51::2");
  assert.equal(get("outside", "tcp", "fd53::1", 8083), null);
  // The other address does answer a publication on every host address: the null above is the pub6h key's doing.
  assert.equal(get("outside", "tcp", "fd53::1", 8080), "web from fd53::2");
  assert.equal(get("outside", "tcp", "198.51.100.1", 8083), null, "an IPv6 host address publishes no IPv4");
});

test("hairpin: a neighbour on the same bridge reaches it through the host's addresses", () => {
  // Masqueraded to the gateway, or web would answer the neighbour directly and the neighbour drop the reply.
  assert.equal(get("netctx-peer", "tcp", "198.51.100.1", 8080), "web from 10.60.0.1");
  assert.equal(get("netctx-peer", "tcp", "10.60.0.1", 8080), "web from 10.60.0.1");
  assert.equal(get("netctx-peer", "tcp", "fd60::1", 8080), "web from fd60::1");
});

test("from the host itself on the gateway and uplink addresses", () => {
  assert.equal(get(undefined, "tcp", "10.60.0.1", 8080), "web from 10.60.0.1");
  assert.equal(get(undefined, "tcp", "198.51.100.1", 8080), "web from 198.51.100.1");
  assert.equal(get(undefined, "tcp", "fd60::1", 8080), "web from fd60::1");
});

test("from the host's loopback, 127.0.0.1 and ::1, through the connect hook (no route_localnet)", () => {
  assert.deepEqual(loopbackProgramNames(testConfig().publishCgroup), [
    "ncpub4t8080",
    "ncpub4u5353",
    "ncpub6t8080",
    "ncpub6u5353",
  ]);
  assert.equal(must(["sysctl", "-n", "net.ipv4.conf.all.route_localnet"]).trim(), "0");
  assert.equal(get(undefined, "tcp", "127.0.0.1", 8080, CLIENT_CG), "web from 10.60.0.1");
  assert.equal(get(undefined, "tcp", "::1", 8080, CLIENT_CG), "web from fd60::1");
  assert.equal(get(undefined, "udp", "127.0.0.1", 5353, CLIENT_CG), "webudp from 10.60.0.1");
  // Outside the publish cgroup (tests never attach at the machine's root) loopback stays plain loopback.
  assert.equal(get(undefined, "tcp", "127.0.0.1", 8080), null);
  // Another netns under the same cgroup keeps its own 127.0.0.1:8080 (the program checks the netns cookie).
  assert.equal(get("outside", "tcp", "127.0.0.1", 8080, CLIENT_CG), null);
});

test("inspect shows the publications", () => {
  const view = netctxJson<{ publish?: string[] }>("inspect", "web");
  assert.deepEqual(view.publish, [
    "8080:80/tcp",
    "5353:53/udp",
    "198.51.100.1:8082:80/tcp",
    "[fd51::1]:8083:80/tcp",
  ]);
});

test("the rule count does not grow with the number of publications", () => {
  const before = ruleCount();
  const elems = publishElements().length;
  const many = Array.from({ length: 20 }, (_, i) => `${9000 + i}:80`);
  netctxOk("create", "many", "--level", "l2", "--network", "front", ...many.flatMap((p) => ["--publish", p]));
  assert.equal(ruleCount(), before);
  assert.equal(publishElements().length, elems + 40, "20 ports x (v4 + v6)");
  assert.equal(publishElements().filter((e) => e.context === "many").length, 40);
  netctxOk("rm", "many");
  assert.equal(publishElements().length, elems);
  assert.equal(ruleCount(), before);
});

test("a host port another context publishes is refused and nothing changes", () => {
  const elems = publishElements();
  const r = netctx(
    "create",
    "dup",
    "--level",
    "l2",
    "--network",
    "front",
    "--publish",
    "7000:70",
    "--publish",
    "8080:81",
  );
  assert.equal(r.code, 1);
  assert.match(r.stderr, /publish/);
  assert.match(r.stderr, /web/);
  assert.deepEqual(publishElements(), elems);
  assert.equal(netctx("inspect", "dup").code, 1, "no record");
  const again = netctx("create", "dup", "--level", "l2", "--network", "front", "--publish", "1.2.3:8080:81");
  assert.equal(again.code, 1);
  assert.match(again.stderr, /publish/);
});

test("rm removes its map elements and loopback programs", () => {
  assert.ok(publishElements().some((e) => e.context === "web"));
  // Its servers still run inside: --force ends them.
  netctxOk("rm", "--force", "web");
  assert.deepEqual(
    publishElements().filter((e) => e.context === "web"),
    [],
  );
  assert.deepEqual(publishElements(), []);
  assert.equal(get("outside", "tcp", "198.51.100.1", 8080), null);
  assert.equal(get(undefined, "tcp", "127.0.0.1", 8080, CLIENT_CG), null);
  const left = loopbackProgramNames(testConfig().publishCgroup);
  assert.deepEqual(left, [], `loopback programs left: ${left.join(", ")}`);
});
