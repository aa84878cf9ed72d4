/**
 * The policy data path (networks/policy-datapath.ts) on the wire, with PolicyTables written by hand (no compiler):
 * two l2 contexts on a bridge network (so the bridge shortcut is in play), one on a routed network, an l3 and a
 * socket context on a host network. Every allowed probe has a blocked twin that differs in one thing (port,
 * protocol, source), and OPEN_TABLES brings everything back.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { Host } from "../../src/host.ts";
import { detachProgram, progFdById, queryPrograms } from "../../src/kernel/bpf/attach.ts";
import { closeFd } from "../../src/kernel/bpf/syscall.ts";
import { addressEntry, OPEN_TABLES, type PolicyTables } from "../../src/model/policy-tables.ts";
import { portPolicyHooks, writePolicyTables } from "../../src/networks/policy-datapath.ts";
import { netctxJson, netctxOk } from "../utils/cli.ts";
import { testConfig } from "../utils/config.ts";
import { contextNetns as ns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";
import { type ProbePlace, probe, type RunningProbe, startServing } from "../utils/socket-probe.ts";

const A = "10.71.0.10";
const B = "10.71.0.11";
const C = "10.71.0.12";
const A6 = "fd71::10";
const B6 = "fd71::11";
const GW = "10.71.0.1";
const R = "10.72.0.10";
const L = "10.73.0.10";
const S = "10.73.0.11";

const place = (name: string): ProbePlace =>
  name === "l" || name === "s" ? { context: name } : { netns: ns(name) };

async function tcp(from: string, to: string, port: number): Promise<boolean> {
  const [r] = await probe(place(from), [{ op: "tcp", host: to, port, timeoutMs: 800 }]);
  return r!.ok;
}

async function udp(from: string, to: string, port: number): Promise<boolean> {
  const [r] = await probe(place(from), [{ op: "udp", host: to, port, reply: true }]);
  return r!.ok;
}

/** Several probes at once (blocked ones wait for their timeout); resolves with "name: true|false" lines. */
async function reach(probes: Record<string, () => Promise<boolean>>): Promise<Record<string, boolean>> {
  const names = Object.keys(probes);
  const results = await Promise.all(names.map((n) => probes[n]!()));
  return Object.fromEntries(names.map((n, i) => [n, results[i]!]));
}

const entry = addressEntry;

/** A TCP connection from the test's namespace (source: the bridge's gateway address) that stays open. */
function openConnection(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, timeout: 1500 });
    s.once("connect", () => resolve(s));
    s.once("timeout", () => {
      s.destroy();
      reject(new Error("timeout"));
    });
    s.once("error", reject);
  });
}

describe("policy data path", () => {
  let host: Host | undefined;
  const servers: RunningProbe[] = [];
  const write = (tables: PolicyTables) => writePolicyTables(host!, tables);

  before(async () => {
    netctxOk(
      "network",
      "create",
      "pb",
      "--driver",
      "bridge",
      "--subnet",
      "10.71.0.0/24",
      "--subnet",
      "fd71::/64",
    );
    netctxOk("network", "create", "pr", "--driver", "routed", "--subnet", "10.72.0.0/24");
    netctxOk("network", "create", "ph", "--driver", "host", "--subnet", "10.73.0.0/24");
    netctxOk("create", "a", "--level", "l2", "--network", "pb", "--ip", A, "--ip", A6);
    netctxOk("create", "b", "--level", "l2", "--network", "pb", "--ip", B, "--ip", B6);
    netctxOk("create", "r", "--level", "l2", "--network", "pr", "--ip", R);
    netctxOk("create", "l", "--level", "l3", "--network", "ph", "--ip", L);
    netctxOk("create", "s", "--level", "socket", "--network", "ph", "--ip", S);
    for (const name of ["a", "b", "r", "s"]) {
      // The socket context may bind only its own address (no IPv6 one).
      const hosts = name === "s" ? { hosts: [S] } : {};
      servers.push(await startServing({ op: "serve", proto: "tcp", port: 80, ...hosts }, place(name)));
      servers.push(await startServing({ op: "serve", proto: "tcp", port: 81, ...hosts }, place(name)));
      servers.push(await startServing({ op: "serve", proto: "udp", port: 80, ...hosts }, place(name)));
    }
    servers.push(await startServing({ op: "sink", port: 82 }, place("b")));
    // DNS on the bridge's gateway address, and a port beside it.
    servers.push(await startServing({ op: "serve", proto: "udp", port: 53, hosts: [GW] }));
    servers.push(await startServing({ op: "serve", proto: "tcp", port: 81, hosts: [GW] }));
    // Neighbours resolved before anything is restricted (ARP passes anyway; this keeps timeouts out of it).
    assert.ok(ping(ns("a"), B) && ping(ns("a"), R) && ping(ns("b"), A) && ping(ns("a"), B6));
    host = Host.open(testConfig());
  });

  after(async () => {
    for (const s of servers) await s.stop();
    if (host) {
      write(OPEN_TABLES);
      host.close();
    }
    netctxOk("rm", "a", "b", "r", "l", "s");
    netctxOk("network", "rm", "pb", "pr", "ph");
  });

  test("open tables: no port program until a policy selects somebody; then every l2 port has both", async () => {
    write(OPEN_TABLES);
    assert.deepEqual(portPolicyHooks(host!, "nc-a"), { ingress: false, egress: false });
    write({ addresses: [entry(`${B}/32`, { ingressSelected: true })], ports: [], anyPort: 0n });
    for (const port of ["nc-a", "nc-b", "nc-r"])
      assert.deepEqual(portPolicyHooks(host!, port), { ingress: true, egress: true }, port);
    write(OPEN_TABLES);
  });

  test("ingress allowing one TCP port opens exactly it, on a bridge (the shortcut) and a routed network", async () => {
    write({
      addresses: [
        entry(`${A}/32`, { ingressFrom: 1n }),
        entry(`${A6}/128`, { ingressFrom: 1n }),
        entry(`${B}/32`, { ingressTo: 1n, ingressSelected: true }),
        entry(`${B6}/128`, { ingressTo: 1n, ingressSelected: true }),
        entry(`${R}/32`, { ingressTo: 1n, ingressSelected: true }),
      ],
      ports: [{ proto: "tcp", port: 80, bits: 1n }],
      anyPort: 0n,
    });
    assert.deepEqual(
      await reach({
        "a->b tcp 80": () => tcp("a", B, 80),
        "a->b v6 tcp 80": () => tcp("a", B6, 80),
        "a->b tcp 81": () => tcp("a", B, 81),
        "a->b v6 tcp 81": () => tcp("a", B6, 81),
        "a->b udp 80": () => udp("a", B, 80),
        "r->b tcp 80": () => tcp("r", B, 80),
        "a->r tcp 80": () => tcp("a", R, 80),
        "a->r tcp 81": () => tcp("a", R, 81),
        "s->r tcp 80": () => tcp("s", R, 80),
        // b is selected for ingress only: its own connections out, and their replies, flow.
        "b->a tcp 81": () => tcp("b", A, 81),
        "b->a udp 80": () => udp("b", A, 80),
      }),
      {
        "a->b tcp 80": true,
        "a->b v6 tcp 80": true,
        "a->b tcp 81": false,
        "a->b v6 tcp 81": false,
        "a->b udp 80": false,
        "r->b tcp 80": false,
        "a->r tcp 80": true,
        "a->r tcp 81": false,
        "s->r tcp 80": false,
        "b->a tcp 81": true,
        "b->a udp 80": true,
      },
    );
  });

  test("egress: a selected context sends only where a policy lets it, any port with anyPort", async () => {
    write({
      addresses: [
        entry(`${A}/32`, { egressFrom: 2n, egressSelected: true }),
        entry(`${R}/32`, { egressTo: 2n }),
      ],
      ports: [],
      anyPort: 2n,
    });
    assert.deepEqual(
      await reach({
        "a->r tcp 81": () => tcp("a", R, 81),
        "a->r udp 80": () => udp("a", R, 80),
        "a->b tcp 80": () => tcp("a", B, 80),
        "b->a tcp 80": () => tcp("b", A, 80),
        "a ping r": async () => ping(ns("a"), R),
        "a ping b": async () => ping(ns("a"), B),
      }),
      {
        "a->r tcp 81": true,
        "a->r udp 80": true,
        "a->b tcp 80": false,
        // Replies to a connection b opened are not a's egress policy's business.
        "b->a tcp 80": true,
        "a ping r": true,
        "a ping b": false,
      },
    );
  });

  test("isolate group: two members never reach each other, the rest stays open", async () => {
    write({
      addresses: [entry(`${A}/32`, { isolateGroup: 7 }), entry(`${B}/32`, { isolateGroup: 7 })],
      ports: [],
      anyPort: 0n,
    });
    assert.deepEqual(
      await reach({
        "a->b tcp 80": () => tcp("a", B, 80),
        "b->a udp 80": () => udp("b", A, 80),
        "a->r tcp 80": () => tcp("a", R, 80),
        "r->b tcp 80": () => tcp("r", B, 80),
      }),
      { "a->b tcp 80": false, "b->a udp 80": false, "a->r tcp 80": true, "r->b tcp 80": true },
    );
  });

  test("shared-stack contexts: a CIDR and the world as sources, l3 egress, through the cgroup parent", async () => {
    // s accepts from 10.71.0.0/24 (its contexts carry the bit too) and from the world; l has an entry of its own, so
    // the world's bits are not its.
    write({
      addresses: [
        entry("10.71.0.0/24", { ingressFrom: 4n }),
        entry(`${A}/32`, { ingressFrom: 4n }),
        entry(`${L}/32`),
        entry(`${S}/32`, { ingressTo: 4n, ingressSelected: true }),
      ],
      ports: [],
      anyPort: 4n,
    });
    const cidrOnly = await reach({
      "a->s tcp 80": () => tcp("a", S, 80),
      "b->s tcp 81": () => tcp("b", S, 81),
      "r->s tcp 80": () => tcp("r", S, 80),
      "l->s tcp 80": () => tcp("l", S, 80),
    });
    assert.deepEqual(cidrOnly, {
      "a->s tcp 80": true,
      "b->s tcp 81": true,
      "r->s tcp 80": false,
      "l->s tcp 80": false,
    });
    write({
      addresses: [
        entry("0.0.0.0/0", { ingressFrom: 4n }),
        entry(`${L}/32`),
        entry(`${S}/32`, { ingressTo: 4n, ingressSelected: true }),
      ],
      ports: [],
      anyPort: 4n,
    });
    assert.deepEqual(
      await reach({ "r->s tcp 80": () => tcp("r", S, 80), "l->s tcp 80": () => tcp("l", S, 80) }),
      { "r->s tcp 80": true, "l->s tcp 80": false },
    );
    // l may send nowhere.
    write({ addresses: [entry(`${L}/32`, { egressSelected: true })], ports: [], anyPort: 0n });
    assert.deepEqual(
      await reach({ "l->s tcp 80": () => tcp("l", S, 80), "s->r tcp 80": () => tcp("s", R, 80) }),
      { "l->s tcp 80": false, "s->r tcp 80": true },
    );
  });

  test("DNS to the gateway stays open for a context that may send nowhere", async () => {
    write({
      addresses: [entry(`${A}/32`, { egressSelected: true }), entry(`${GW}/32`, { gateway: true })],
      ports: [],
      anyPort: 0n,
    });
    assert.deepEqual(
      await reach({
        "a->gw udp 53": () => udp("a", GW, 53),
        "a->gw tcp 81": () => tcp("a", GW, 81),
        "a->b tcp 80": () => tcp("a", B, 80),
      }),
      { "a->gw udp 53": true, "a->gw tcp 81": false, "a->b tcp 80": false },
    );
  });

  test("an established connection survives tables that no longer allow it; a new one does not get through", async () => {
    // The test's namespace reaches b from the gateway's address, through b's port towards it (its egress block).
    const allowGateway = {
      addresses: [
        entry(`${GW}/32`, { ingressFrom: 1n }),
        entry(`${B}/32`, { ingressTo: 1n, ingressSelected: true }),
      ],
      ports: [{ proto: "tcp" as const, port: 82, bits: 1n }],
      anyPort: 0n,
    };
    write(allowGateway);
    const conn = await openConnection(B, 82);
    const closed = new Promise<void>((resolve) => conn.once("close", () => resolve()));
    conn.write("before");
    write({ addresses: [entry(`${B}/32`, { ingressSelected: true })], ports: [], anyPort: 0n });
    await assert.rejects(openConnection(B, 82), /timeout/);
    conn.end("after");
    // The sink closes once it has read everything: the old connection carried data both ways after the change.
    await closed;
  });

  test("a context made while a policy selects somebody gets its port programs at create", async () => {
    // A policy in the store: the create's own pass over the tables (engine/policy-sync.ts) selects c too.
    netctxOk("policy", "add", "to-c", "--to", "c", "--from", "b");
    netctxOk("create", "c", "--level", "l2", "--network", "pb", "--ip", C);
    try {
      assert.deepEqual(portPolicyHooks(host!, "nc-c"), { ingress: true, egress: true });
      assert.equal(ping(ns("a"), C), false, "c is selected and nothing allows a");
      assert.equal(ping(ns("b"), C), true, "the policy allows b");
      assert.equal(ping(ns("c"), A, { tries: 2 }), true, "c's own pings and their replies");
    } finally {
      netctxOk("rm", "c");
      netctxOk("policy", "rm", "to-c");
    }
  });

  test("the policy's filter runs before the shortcut's in the bridge's shared block: a denied frame is not sent short", async () => {
    const bridge = host!.rtnl.linkIndex("nc-pb");
    const blocks = host!.rtnl.deviceBlocks(host!.rtnl.linkIndex("nc-a"));
    assert.deepEqual(blocks, { ingress: bridge, egress: (bridge | 0x80000000) >>> 0 });
    const view = netctxJson<{ shortcut?: { state: string; macs?: string[] } }>("network", "inspect", "pb");
    assert.equal(view.shortcut?.state, "on");
    assert.equal(view.shortcut?.macs?.length, 2, "a and b go short");
    write({
      addresses: [
        entry(`${A}/32`, { ingressFrom: 1n }),
        entry(`${B}/32`, { ingressTo: 1n, ingressSelected: true }),
      ],
      ports: [{ proto: "tcp", port: 80, bits: 1n }],
      anyPort: 0n,
    });
    assert.deepEqual(
      await reach({ "a->b tcp 80": () => tcp("a", B, 80), "a->b tcp 81": () => tcp("a", B, 81) }),
      { "a->b tcp 80": true, "a->b tcp 81": false },
    );
    const prefs = host!.rtnl.blockFilters(bridge).map((f) => [f.pref, f.name]);
    assert.deepEqual(
      [...new Map(prefs.map((p) => [p.join(), p])).values()],
      [
        [1, "nctx_pol_tcin"],
        [10, "nctx_shortcut_4"],
      ],
    );
  });

  test("a context with bandwidth limits (its ingress holds the limits' qdisc) is policed by tcx programs", async () => {
    const W = "10.71.0.13";
    netctxOk("policy", "add", "to-w", "--to", "w", "--from", "a", "--port", "80/tcp");
    netctxOk("create", "w", "--level", "l2", "--network", "pb", "--ip", W, "--bandwidth", "100mbit");
    const served = [
      await startServing({ op: "serve", proto: "tcp", port: 80 }, place("w")),
      await startServing({ op: "serve", proto: "tcp", port: 81 }, place("w")),
    ];
    try {
      assert.deepEqual(
        await reach({
          "a->w tcp 80": () => tcp("a", W, 80),
          "a->w tcp 81": () => tcp("a", W, 81),
          "b->w tcp 80": () => tcp("b", W, 80),
        }),
        { "a->w tcp 80": true, "a->w tcp 81": false, "b->w tcp 80": false },
      );
      // From the host (the gateway's address) only w's own port decides: the other ports' programs never see it.
      await assert.rejects(openConnection(W, 80), /timeout/);
      const ifindex = host!.rtnl.linkIndex("nc-w");
      assert.equal(host!.rtnl.deviceBlocks(ifindex), undefined, "nc-w left the blocks");
      assert.equal(queryPrograms(ifindex, "TCX_INGRESS").length, 1);
      assert.equal(queryPrograms(ifindex, "TCX_EGRESS").length, 1);
      assert.deepEqual(portPolicyHooks(host!, "nc-w"), { ingress: true, egress: true });
      // gc puts the tcx programs back where somebody took them off.
      for (const type of ["TCX_INGRESS", "TCX_EGRESS"] as const)
        for (const id of queryPrograms(ifindex, type)) {
          const fd = progFdById(id);
          detachProgram(ifindex, fd, type);
          closeFd(fd);
        }
      assert.deepEqual(portPolicyHooks(host!, "nc-w"), { ingress: false, egress: false });
      netctxOk("gc");
      assert.deepEqual(portPolicyHooks(host!, "nc-w"), { ingress: true, egress: true });
      await assert.rejects(openConnection(W, 80), /timeout/);
    } finally {
      for (const s of served) await s.stop();
      netctxOk("rm", "w");
      netctxOk("policy", "rm", "to-w");
    }
  });

  test("gc puts back port programs somebody took off, while a policy selects somebody", () => {
    write({ addresses: [entry(`${B}/32`, { ingressSelected: true })], ports: [], anyPort: 0n });
    const blocks = host!.rtnl.deviceBlocks(host!.rtnl.linkIndex("nc-b"))!;
    // The bridge network's ingress block: the filter goes for every port of pb at once.
    assert.ok(host!.rtnl.blockFilterDel(blocks.ingress, 1));
    assert.deepEqual(portPolicyHooks(host!, "nc-b"), { ingress: false, egress: true });
    assert.deepEqual(portPolicyHooks(host!, "nc-a"), { ingress: false, egress: true });
    const planned = netctxJson<{ actions: { action: string; object: string }[] }>("gc", "--dry-run");
    assert.deepEqual(
      // A dry run goes through the loop's passes without fixing anything: each may list it.
      [...new Set(planned.actions.filter((a) => a.action === "reattach").map((a) => a.object))],
      [`policy filters in tc blocks ${blocks.ingress} and ${blocks.egress}`],
    );
    netctxOk("gc");
    assert.deepEqual(portPolicyHooks(host!, "nc-b"), { ingress: true, egress: true });
    assert.equal(ping(ns("a"), B), false, "b is selected again: nothing allows a");
  });

  test("OPEN_TABLES restores everything", async () => {
    write({
      addresses: [entry(`${B}/32`, { ingressSelected: true, isolateGroup: 3 })],
      ports: [],
      anyPort: 0n,
    });
    write(OPEN_TABLES);
    assert.deepEqual(
      await reach({
        "a->b tcp 81": () => tcp("a", B, 81),
        "a->b udp 80": () => udp("a", B, 80),
        "l->s tcp 80": () => tcp("l", S, 80),
        "r->b tcp 80": () => tcp("r", B, 80),
      }),
      { "a->b tcp 81": true, "a->b udp 80": true, "l->s tcp 80": true, "r->b tcp 80": true },
    );
  });

  test("bad tables are refused naming the field, before anything is written", () => {
    assert.throws(
      () =>
        write({ addresses: [entry("10.71.0.300/32", { ingressSelected: true })], ports: [], anyPort: 0n }),
      /addresses\[0\]\.cidr/,
    );
    assert.throws(
      () => write({ addresses: [], ports: [{ proto: "tcp", port: 70000, bits: 1n }], anyPort: 0n }),
      /ports\[0\]\.port/,
    );
    assert.throws(() => write({ addresses: [], ports: [], anyPort: 1n << 256n }), /anyPort/);
    // A table selecting b with one bad entry further on: nothing of it is written, b stays open.
    assert.throws(
      () =>
        write({
          addresses: [entry(`${B}/32`, { ingressSelected: true }), entry("10.71.0.0/33")],
          ports: [],
          anyPort: 0n,
        }),
      /addresses\[1\]\.cidr/,
    );
    assert.ok(ping(ns("a"), B), "a reaches b");
  });
});
