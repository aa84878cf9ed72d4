/**
 * Policies end to end: made through the real CLI (the engine compiles them and writes the data path), checked on the
 * wire. Every level and network driver that enforces them: l2 on a bridge (with its shortcut) and on a routed
 * network, l3 and socket on a host network. Macvlan is known unenforced (no host-side device) and not tested here.
 * Every allowed probe has a blocked twin that differs in one thing: the port, the protocol, or the source.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { netctxOk } from "../utils/cli.ts";
import { addVethNetns, contextNetns, delVethNetns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";
import { type ReachFrom, reach, tcpReaches as tcp, udpReaches as udp } from "../utils/reach.ts";
import { sh } from "../utils/shell.ts";
import { type ProbePlace, type RunningProbe, startServing } from "../utils/socket-probe.ts";

const A = "10.81.0.10";
const B = "10.81.0.11";
const C = "10.81.0.12";
const A6 = "fd81::10";
const B6 = "fd81::11";
const R = "10.82.0.10";
const L = "10.83.0.10";
const S = "10.83.0.11";
const OUT = "192.0.2.2";
const OUTSIDE = { name: "outside", hostIfname: "vout" };

const SHARED_STACK = new Set(["l", "s", "late-s"]);
/** An l2 context probes from its netns, a shared-stack one through `netctx exec`, "outside" from its netns. */
const at = (name: string): ReachFrom =>
  name === "test"
    ? undefined
    : name === "outside"
      ? { netns: "/run/netns/outside" }
      : SHARED_STACK.has(name)
        ? { context: name }
        : { netns: contextNetns(name) };

const policies: string[] = [];
function policy(name: string, ...args: string[]): void {
  netctxOk("policy", "add", name, ...args);
  policies.push(name);
}

describe("policy reach through the CLI", () => {
  const servers: RunningProbe[] = [];
  const serve = async (name: string, address: string | string[], into = servers) => {
    const hosts = typeof address === "string" ? [address] : address;
    const place = at(name) as ProbePlace | undefined;
    // Each server on its context's address: a socket context may bind only its own.
    for (const port of [80, 81])
      into.push(await startServing({ op: "serve", proto: "tcp", port, hosts }, place));
    into.push(await startServing({ op: "serve", proto: "udp", port: 80, hosts }, place));
  };

  before(async () => {
    netctxOk(
      "network",
      "create",
      "pb",
      "--driver",
      "bridge",
      "--subnet",
      "10.81.0.0/24",
      "--subnet",
      "fd81::/64",
    );
    netctxOk("network", "create", "pr", "--driver", "routed", "--subnet", "10.82.0.0/24");
    netctxOk("network", "create", "ph", "--driver", "host", "--subnet", "10.83.0.0/24");
    netctxOk("create", "a", "--level", "l2", "--network", "pb", "--ip", A, "--ip", A6);
    netctxOk("create", "b", "--level", "l2", "--network", "pb", "--ip", B, "--ip", B6);
    netctxOk("create", "c", "--level", "l2", "--network", "pb", "--ip", C);
    netctxOk("create", "r", "--level", "l2", "--network", "pr", "--ip", R);
    netctxOk("create", "l", "--level", "l3", "--network", "ph", "--ip", L);
    netctxOk("create", "s", "--level", "socket", "--network", "ph", "--ip", S);
    // The world: a netns behind a veth of the test's namespace, routed through it (not a context, not a gateway).
    addVethNetns({
      ...OUTSIDE,
      hostAddresses: ["192.0.2.1/24"],
      addresses: [`${OUT}/24`],
      routes: ["default via 192.0.2.1"],
    });
    sh("sysctl -qw net.ipv4.ip_forward=1");
    await Promise.all([
      serve("a", [A, A6]),
      serve("b", [B, B6]),
      serve("c", C),
      serve("r", R),
      serve("l", L),
      serve("s", S),
    ]);
    servers.push(
      await startServing({ op: "serve", proto: "tcp", port: 80, hosts: [OUT] }, at("outside") as ProbePlace),
    );
    // Neighbours resolved while everything is open, so no timeout below is an ARP round.
    assert.ok(ping(contextNetns("a"), B) && ping(contextNetns("a"), C) && ping(contextNetns("a"), R));
    assert.ok(ping(contextNetns("c"), OUT) && ping(contextNetns("r"), B));
    assert.ok(ping(contextNetns("a"), B6, { tries: 3 }));
  });

  afterEach(() => {
    if (policies.length > 0) netctxOk("policy", "rm", ...policies.splice(0));
  });

  after(async () => {
    for (const s of servers) await s.stop();
    netctxOk("rm", "a", "b", "c", "r", "l", "s");
    netctxOk("network", "rm", "pb", "pr", "ph");
    delVethNetns(OUTSIDE);
  });

  test("no policy: everything reaches everything", async () => {
    assert.deepEqual(
      await reach({
        "a->b tcp 81": () => tcp(at("a"), B, 81),
        "a->r udp 80": () => udp(at("a"), R, 80),
        "a->l tcp 81": () => tcp(at("a"), L, 81),
        "a->s tcp 81": () => tcp(at("a"), S, 81),
        "outside->b tcp 81": () => tcp(at("outside"), B, 81),
      }),
      {
        "a->b tcp 81": true,
        "a->r udp 80": true,
        "a->l tcp 81": true,
        "a->s tcp 81": true,
        "outside->b tcp 81": true,
      },
    );
  });

  test("ingress allowing one TCP port opens exactly it: l2 bridge, l2 routed, l3, socket", async () => {
    for (const [to] of [["b"], ["r"], ["l"], ["s"]])
      policy(`a-to-${to}`, "--to", to!, "--from", "a", "--port", "80");
    // A shared-stack context as the allowed source: l, not s, may reach r on 81.
    policy("l-to-r", "--to", "r", "--from", "l", "--port", "81");
    const probes: Record<string, () => Promise<boolean>> = {};
    const expected: Record<string, boolean> = {};
    for (const [name, addr] of [
      ["b", B],
      ["r", R],
      ["l", L],
      ["s", S],
    ] as const) {
      probes[`a->${name} tcp 80`] = () => tcp(at("a"), addr, 80);
      expected[`a->${name} tcp 80`] = true;
      probes[`c->${name} tcp 80`] = () => tcp(at("c"), addr, 80);
      expected[`c->${name} tcp 80`] = false;
      probes[`a->${name} udp 80`] = () => udp(at("a"), addr, 80);
      expected[`a->${name} udp 80`] = false;
      // The selected context's own connections out, and their replies, flow.
      probes[`${name}->a tcp 81`] = () => tcp(at(name), A, 81);
      expected[`${name}->a tcp 81`] = true;
    }
    Object.assign(probes, {
      "a->b v6 tcp 80": () => tcp(at("a"), B6, 80),
      "a->b v6 tcp 81": () => tcp(at("a"), B6, 81),
      "a->b tcp 81": () => tcp(at("a"), B, 81),
      "a->s tcp 81": () => tcp(at("a"), S, 81),
      "b->a udp 80": () => udp(at("b"), A, 80),
      "l->r tcp 81": () => tcp(at("l"), R, 81),
      "s->r tcp 81": () => tcp(at("s"), R, 81),
      "a->r tcp 81": () => tcp(at("a"), R, 81),
      // c is selected by nobody: open to all.
      "a->c tcp 81": () => tcp(at("a"), C, 81),
      "r->c udp 80": () => udp(at("r"), C, 80),
      "s->c tcp 81": () => tcp(at("s"), C, 81),
    });
    Object.assign(expected, {
      "a->b v6 tcp 80": true,
      "a->b v6 tcp 81": false,
      "a->b tcp 81": false,
      "a->s tcp 81": false,
      "b->a udp 80": true,
      "l->r tcp 81": true,
      "s->r tcp 81": false,
      "a->r tcp 81": false,
      "a->c tcp 81": true,
      "r->c udp 80": true,
      "s->c tcp 81": true,
    });
    assert.deepEqual(await reach(probes), expected);
  });

  test("--egress restricts the selected sender, on a veth (l2) and in a cgroup (socket)", async () => {
    policy("c-out", "--egress", "--from", "c", "--to", "b", "--port", "81");
    policy("s-out", "--egress", "--from", "s", "--to", "r", "--port", "80");
    assert.deepEqual(
      await reach({
        "c->b tcp 81": () => tcp(at("c"), B, 81),
        "c->b tcp 80": () => tcp(at("c"), B, 80),
        "c->b udp 80": () => udp(at("c"), B, 80),
        "c->r tcp 81": () => tcp(at("c"), R, 81),
        "s->r tcp 80": () => tcp(at("s"), R, 80),
        "s->r tcp 81": () => tcp(at("s"), R, 81),
        "s->b tcp 80": () => tcp(at("s"), B, 80),
        // Replies of the selected senders to connections made to them flow.
        "a->c tcp 80": () => tcp(at("a"), C, 80),
        "a->s tcp 80": () => tcp(at("a"), S, 80),
        // An unselected sender is as free as before.
        "l->r tcp 81": () => tcp(at("l"), R, 81),
        "a->b tcp 80": () => tcp(at("a"), B, 80),
      }),
      {
        "c->b tcp 81": true,
        "c->b tcp 80": false,
        "c->b udp 80": false,
        "c->r tcp 81": false,
        "s->r tcp 80": true,
        "s->r tcp 81": false,
        "s->b tcp 80": false,
        "a->c tcp 80": true,
        "a->s tcp 80": true,
        "l->r tcp 81": true,
        "a->b tcp 80": true,
      },
    );
  });

  test("selectors host, world, a CIDR and network:NAME", async () => {
    policy("from-host", "--to", "b", "--from", "host", "--port", "80");
    policy("from-world", "--to", "r", "--from", "world", "--port", "80");
    policy("from-cidr", "--to", "s", "--from", "10.82.0.0/24", "--port", "80");
    policy("to-world", "--egress", "--from", "c", "--to", "world");
    policy("from-net", "--to", "l", "--from", "network:pr", "--port", "81");
    assert.deepEqual(
      await reach({
        // The test's namespace reaches b from the bridge's gateway address: the host.
        "host->b tcp 80": () => tcp(at("test"), B, 80),
        "host->b tcp 81": () => tcp(at("test"), B, 81),
        "a->b tcp 80": () => tcp(at("a"), B, 80),
        "outside->b tcp 80": () => tcp(at("outside"), B, 80),
        "outside->r tcp 80": () => tcp(at("outside"), R, 80),
        "outside->r tcp 81": () => tcp(at("outside"), R, 81),
        "a->r tcp 80": () => tcp(at("a"), R, 80),
        "s->r tcp 80": () => tcp(at("s"), R, 80),
        "r->s tcp 80": () => tcp(at("r"), S, 80),
        "r->s tcp 81": () => tcp(at("r"), S, 81),
        "a->s tcp 80": () => tcp(at("a"), S, 80),
        "c->outside tcp 80": () => tcp(at("c"), OUT, 80),
        "c->a tcp 80": () => tcp(at("c"), A, 80),
        "r->l tcp 81": () => tcp(at("r"), L, 81),
        "a->l tcp 81": () => tcp(at("a"), L, 81),
      }),
      {
        "host->b tcp 80": true,
        "host->b tcp 81": false,
        "a->b tcp 80": false,
        "outside->b tcp 80": false,
        "outside->r tcp 80": true,
        "outside->r tcp 81": false,
        "a->r tcp 80": false,
        "s->r tcp 80": false,
        "r->s tcp 80": true,
        "r->s tcp 81": false,
        "a->s tcp 80": false,
        "c->outside tcp 80": true,
        "c->a tcp 80": false,
        "r->l tcp 81": true,
        "a->l tcp 81": false,
      },
    );
  });

  test("a label selector matches a context made after the policy, and nothing once the policy is gone", async () => {
    policy("to-late", "--to", "app=late", "--from", "a", "--port", "80");
    const [late, lateS, plain] = ["10.81.0.20", "10.83.0.20", "10.81.0.21"];
    netctxOk("create", "late", "--level", "l2", "--network", "pb", "--ip", late, "--label", "app=late");
    netctxOk(
      "create",
      "late-s",
      "--level",
      "socket",
      "--network",
      "ph",
      "--ip",
      lateS,
      "--label",
      "app=late",
    );
    netctxOk("create", "plain", "--level", "l2", "--network", "pb", "--ip", plain, "--label", "app=plain");
    const lateServers: RunningProbe[] = [];
    try {
      await Promise.all([
        serve("late", late, lateServers),
        serve("late-s", lateS, lateServers),
        serve("plain", plain, lateServers),
      ]);
      const probes = {
        "a->late tcp 80": () => tcp(at("a"), late, 80),
        "a->late tcp 81": () => tcp(at("a"), late, 81),
        "c->late tcp 80": () => tcp(at("c"), late, 80),
        "a->late-s tcp 80": () => tcp(at("a"), lateS, 80),
        "a->late-s tcp 81": () => tcp(at("a"), lateS, 81),
        "a->plain tcp 81": () => tcp(at("a"), plain, 81),
      };
      assert.deepEqual(await reach(probes), {
        "a->late tcp 80": true,
        "a->late tcp 81": false,
        "c->late tcp 80": false,
        "a->late-s tcp 80": true,
        "a->late-s tcp 81": false,
        "a->plain tcp 81": true,
      });
      netctxOk("policy", "rm", ...policies.splice(0));
      assert.deepEqual(await reach(probes), {
        "a->late tcp 80": true,
        "a->late tcp 81": true,
        "c->late tcp 80": true,
        "a->late-s tcp 80": true,
        "a->late-s tcp 81": true,
        "a->plain tcp 81": true,
      });
    } finally {
      for (const p of lateServers) await p.stop();
      netctxOk("rm", "late", "late-s", "plain");
    }
  });
});
