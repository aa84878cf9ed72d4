/**
 * `netctx serve --host-dns ADDR` (issue 20): the host's own tools resolve context names of every network (busybox
 * nslookup, and glibc's getent with a resolv.conf naming the listener), other names are forwarded to the host's
 * upstream, a removed context's name is gone, and the listener is no open resolver: a sender that is not this host
 * (another namespace reaching the listener's address over a veth) hears nothing, nor does a host socket bound to
 * another address.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { netctx, netctxJson, netctxOk, type RunningEngine, startEngine } from "../utils/cli.ts";
import { dataOf, query } from "../utils/dns-client.ts";
import { startDnsStub } from "../utils/dns-stub.ts";
import type { LineProcess } from "../utils/line-process.ts";
import { addVethNetns, delVethNetns, inNetns } from "../utils/netns.ts";

const scratch = process.env.NETCTX_TEST_SCRATCH ?? "/tmp";
const resolvConf = join(scratch, "upstream-resolv.conf");
const OUTSIDE = { name: "outside", hostIfname: "outside-h" };
const STUB = "192.0.2.53";
/** The host's end of the veth to "outside": a listener on it is reachable from there. */
const HOST_ADDR = "192.0.2.254";

let engine: RunningEngine;
let stub: LineProcess;

function run(argv: string[]): { code: number | null; out: string } {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: 30_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

const addressOf = (name: string) =>
  netctxJson<{ addresses: string[] }>("inspect", name).addresses.map((a) => a.split("/")[0]!);

before(async () => {
  addVethNetns({ ...OUTSIDE, hostAddresses: [`${HOST_ADDR}/24`], addresses: [`${STUB}/24`] });
  stub = await startDnsStub(OUTSIDE.name, STUB);
  writeFileSync(resolvConf, `nameserver ${STUB}\n`);
  engine = await startEngine({
    args: [
      "--dns-resolv-conf",
      resolvConf,
      "--host-dns",
      "127.0.0.1",
      "--host-dns",
      "[::1]:5353",
      "--host-dns",
      HOST_ADDR,
    ],
  });
  netctxOk("network", "create", "front", "--subnet", "10.64.0.0/24", "--subnet", "fd64::/64");
  netctxOk("network", "create", "back", "--subnet", "10.65.0.0/24");
  netctxOk("create", "web", "--level", "l2", "--network", "front", "--alias", "www");
  netctxOk("create", "db", "--level", "l2", "--network", "back");
  // The listeners bind as the engine starts; ask until the first answers.
  for (let i = 0; i < 50; i++)
    if (dataOf(await query("127.0.0.1", "web", { timeoutMs: 100 })).length > 0) break;
});

after(async () => {
  netctx("rm", "web", "db");
  await engine?.stop();
  await stub?.stop();
  delVethNetns(OUTSIDE);
});

test("the host's tools resolve every network's names at the host listener (busybox nslookup, getent)", () => {
  const [web4, web6] = addressOf("web");
  const www = run(["busybox", "nslookup", "www", "127.0.0.1"]);
  assert.equal(www.code, 0, www.out);
  assert.ok(www.out.includes(web4!) && www.out.includes(web6!), www.out);
  const db = run(["busybox", "nslookup", "db.back.netctx", "127.0.0.1"]);
  assert.equal(db.code, 0, db.out);
  assert.ok(db.out.includes(addressOf("db")[0]!), db.out);
  // glibc, as the host would use it: a resolv.conf naming the listener (in a mount namespace of its own).
  const conf = join(scratch, "host-dns-resolv.conf");
  writeFileSync(conf, "nameserver 127.0.0.1\n");
  const glibc = run([
    "unshare",
    "--mount",
    "sh",
    "-c",
    `mount --bind ${conf} /etc/resolv.conf && getent ahostsv4 web.front.netctx && getent hosts db`,
  ]);
  assert.equal(glibc.code, 0, glibc.out);
  assert.match(glibc.out, new RegExp(`^${web4!.replace(/\./g, "\\.")}\\s+STREAM web\\.front\\.netctx`, "m"));
  assert.match(glibc.out, new RegExp(`^${addressOf("db")[0]!.replace(/\./g, "\\.")}\\s+db`, "m"));
});

test("other names are forwarded to the host's upstream; PTR answers; IPv6 loopback on its own port", async () => {
  const far = run(["busybox", "nslookup", "far.example", "127.0.0.1"]);
  assert.equal(far.code, 0, far.out);
  assert.match(far.out, /203\.0\.113\.9/);
  const [web4] = addressOf("web");
  const ptr = await query("127.0.0.1", web4!.split(".").reverse().join(".") + ".in-addr.arpa", {
    type: "PTR",
  });
  assert.deepEqual(dataOf(ptr), ["web.front.netctx"]);
  assert.deepEqual(dataOf(await query("::1", "db", { port: 5353 })), addressOf("db"));
  assert.deepEqual(dataOf(await query("::1", "db", { port: 5353, tcp: true })), addressOf("db"));
});

test("a removed context's name is gone from the host listener", async () => {
  netctxOk("create", "brief", "--level", "l2", "--network", "back");
  assert.deepEqual(dataOf(await query("127.0.0.1", "brief")), addressOf("brief"));
  netctxOk("rm", "brief");
  const gone = await query("127.0.0.1", "brief");
  assert.ok(gone, "an answer came");
  assert.equal(gone.flags! & 0xf, 3, "NXDOMAIN");
});

test("no open resolver: another namespace reaching the listener's address hears nothing, nor another source", async () => {
  // From the host itself the address answers (the kernel picks it as the source of a local query).
  const local = run(["busybox", "nslookup", "web", HOST_ADDR]);
  assert.equal(local.code, 0, local.out);
  const outside = run(inNetns(`/run/netns/${OUTSIDE.name}`, ["busybox", "nslookup", "web", HOST_ADDR]));
  assert.notEqual(outside.code, 0, outside.out);
  assert.doesNotMatch(outside.out, new RegExp(addressOf("web")[0]!.replace(/\./g, "\\.")));
  assert.equal(await query(HOST_ADDR, "far.example", { source: STUB, timeoutMs: 500 }), undefined);
  // A host socket bound to a gateway's address is a sender of network front, not the host's tool.
  assert.equal(await query(HOST_ADDR, "db", { source: "10.64.0.1", timeoutMs: 500 }), undefined);
  assert.equal(await query("127.0.0.1", "db", { source: "10.64.0.1", timeoutMs: 500 }), undefined);
});

test("bad input: --host-dns that is no address, or with --no-dns, is one line naming the field", () => {
  for (const args of [
    ["--host-dns", "localhost"],
    ["--host-dns", "127.0.0.1:99999"],
    ["--host-dns", "127.0.0.1", "--no-dns"],
  ]) {
    const r = netctx("serve", ...args, "--socket", join(scratch, "other.sock"));
    assert.notEqual(r.code, 0, args.join(" "));
    assert.match(r.stderr, /^error: .*host-dns/, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
});
