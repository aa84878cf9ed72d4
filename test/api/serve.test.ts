import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { netctx, netctxJson, netctxOk, type RunningEngine, startEngine } from "../utils/cli.ts";
import { cni, cniRaw } from "../utils/cni-runtime.ts";
import { links } from "../utils/kernel-oracle.ts";
import { addNetns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";
import { eventually, waitFor } from "../utils/wait.ts";

const SOCKET = join(process.env.NETCTX_STATE_DIR!, "netctx.sock");
let engine: RunningEngine;

/** The engine's log arrives through the event loop, which spawnSync blocks: wait for the line. */
async function logged(re: RegExp): Promise<void> {
  await waitFor(() => re.test(engine.log()), 5000);
  assert.match(engine.log(), re);
}

const conf = { cniVersion: "1.0.0", name: "srv", type: "netctx", subnets: ["10.73.0.0/24"], nat: true };

before(async () => {
  engine = await startEngine();
});
after(() => engine.stop());

test("the engine listens on a root-only unix socket beside its state", () => {
  assert.ok(existsSync(SOCKET));
  assert.equal(statSync(SOCKET).mode & 0o777, 0o600);
  const second = netctx("serve");
  assert.notEqual(second.code, 0, "a second engine on the same state is refused");
  assert.match(second.stderr, /already serving/);
});

test("the CLI goes through the running engine, and its errors still come back as one line", async () => {
  netctxOk("network", "create", "viaeng", "--driver", "bridge", "--subnet", "10.74.0.0/24");
  netctxOk("create", "e1", "--level", "l2", "--network", "viaeng");
  netctxOk("create", "e2", "--level", "l2", "--network", "viaeng");
  await logged(/POST \/v1\/networks -> 201/);
  await logged(/POST \/v1\/contexts -> 201/);
  const [e1, e2] = ["e1", "e2"].map((n) => netctxJson<{ netns: string; addresses: string[] }>("inspect", n));
  assert.ok(ping(e1!.netns, e2!.addresses[0]!.split("/")[0]!));
  const bad = netctx("create", "e3", "--level", "l2", "--network", "viaeng", "--ip", "10.99.0.1");
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /^error: ip: 10\.99\.0\.1 is outside/);
  assert.equal(bad.stderr.trim().split("\n").length, 1);
  netctxOk("rm", "e1", "e2");
  await logged(/DELETE \/v1\/contexts\/e1 -> 200/);
  netctxOk("network", "rm", "viaeng");
});

test("the CNI launcher hands calls to the engine, and does the work itself when the engine is gone", async () => {
  const ns1 = addNetns("srv1");
  const add = cni("ADD", conf, { id: "a".repeat(64), netns: ns1, ifname: "eth0" });
  assert.equal(add.code, 0, add.stdout + add.stderr);
  await logged(/POST \/v1\/cni ADD a{64} -> 200/);
  const bad = cniRaw(
    { CNI_COMMAND: "ADD", CNI_CONTAINERID: "b", CNI_NETNS: ns1, CNI_IFNAME: "eth1" },
    "{not json",
  );
  assert.notEqual(bad.code, 0);
  assert.equal(bad.json?.code, 6, "the spec's JSON error, through the engine");

  // A value HTTP headers cannot carry (a runtime would not send it, a hostile caller might) never reaches the
  // engine as a forged header: the client hands the call to the in-process path, which refuses CNI_ARGS.
  await logged(/POST \/v1\/cni ADD b -> 500/);
  const seen = engine.log();
  const forged = cniRaw(
    {
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: "d".repeat(64),
      CNI_NETNS: ns1,
      CNI_IFNAME: "eth2",
      CNI_ARGS: "IgnoreUnknown=1\r\nX-Cni-Command: DEL",
    },
    JSON.stringify(conf),
  );
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(engine.log(), seen, "nothing reached the engine");
  assert.notEqual(forged.code, 0, forged.stdout);
  assert.equal(forged.json?.code, 4, forged.stdout);

  // Killed without a chance to clean up: the socket file stays, nobody answers; the launcher falls back.
  await engine.stop("SIGKILL");
  assert.ok(existsSync(SOCKET));
  const before = engine.log();
  const ns2 = addNetns("srv2");
  const add2 = cni("ADD", conf, { id: "c".repeat(64), netns: ns2, ifname: "eth0" });
  assert.equal(add2.code, 0, add2.stdout + add2.stderr);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(engine.log(), before, "nothing reached the dead engine");
  const ips = (add2.json?.ips ?? []) as { address: string }[];
  const ip2 = ips[0]!.address.split("/")[0]!;
  assert.ok(ping(ns1, ip2), "both containers are real");

  // A new engine takes over the leftover socket; DEL through it removes the host side.
  engine = await startEngine();
  for (const id of ["a".repeat(64), "c".repeat(64)]) {
    const del = cni("DEL", conf, { id, netns: id.startsWith("a") ? ns1 : ns2, ifname: "eth0" });
    assert.equal(del.code, 0, del.stdout);
  }
  // Straight after its DEL (its teardown still queued), the same container gets its interface back.
  const again = cni("ADD", conf, { id: "a".repeat(64), netns: ns1, ifname: "eth0" });
  assert.equal(again.code, 0, again.stdout + again.stderr);
  assert.equal(cni("DEL", conf, { id: "a".repeat(64), netns: ns1, ifname: "eth0" }).code, 0);
  await logged(/POST \/v1\/cni DEL c{64} -> 200/);
  // The engine answers DEL once the attachment is marked, and tears it down when requests pause.
  const veths = () =>
    links().filter((l) => l.ifname.startsWith("nc-") && l.linkinfo?.info_kind === "veth").length;
  assert.equal(eventually(veths, 0), 0);
  assert.deepEqual(
    eventually(() => netctxJson<unknown[]>("ls").length, 0),
    0,
    "records and leases go too",
  );
});
