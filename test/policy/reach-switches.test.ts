/**
 * The network switches end to end, through the CLI and on the wire: `--isolate` (its contexts cannot reach each
 * other, only the gateway and beyond; policies do not open it) on a bridge and a routed network, and
 * `--default-deny` (every context on it accepts only what a policy allows) on a bridge and a host network.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { netctxOk } from "../utils/cli.ts";
import { contextNetns } from "../utils/netns.ts";
import { ping } from "../utils/ping.ts";
import { type ReachFrom, reach, tcpReaches as tcp, udpReaches as udp } from "../utils/reach.ts";
import { type ProbePlace, type RunningProbe, startServing } from "../utils/socket-probe.ts";

const ADDR = {
  i1: "10.91.0.10",
  i2: "10.91.0.11",
  j1: "10.92.0.10",
  j2: "10.92.0.11",
  d1: "10.93.0.10",
  d2: "10.93.0.11",
  dl: "10.94.0.10",
  ds: "10.94.0.11",
  o: "10.95.0.10",
} as const;
type Name = keyof typeof ADDR;
const GW_I = "10.91.0.1";
const GW_J = "10.92.0.1";
const GW_D = "10.93.0.1";

const at = (name: Name | "test"): ReachFrom =>
  name === "test"
    ? undefined
    : name === "dl" || name === "ds"
      ? { context: name }
      : { netns: contextNetns(name) };

describe("network switches through the CLI", () => {
  const servers: RunningProbe[] = [];

  before(async () => {
    netctxOk("network", "create", "iso", "--subnet", "10.91.0.0/24", "--isolate");
    netctxOk("network", "create", "isor", "--driver", "routed", "--subnet", "10.92.0.0/24", "--isolate");
    netctxOk("network", "create", "deny", "--subnet", "10.93.0.0/24", "--default-deny");
    netctxOk("network", "create", "denyh", "--driver", "host", "--subnet", "10.94.0.0/24", "--default-deny");
    netctxOk("network", "create", "open", "--subnet", "10.95.0.0/24");
    const nets: Record<Name, [string, string]> = {
      i1: ["iso", "l2"],
      i2: ["iso", "l2"],
      j1: ["isor", "l2"],
      j2: ["isor", "l2"],
      d1: ["deny", "l2"],
      d2: ["deny", "l2"],
      dl: ["denyh", "l3"],
      ds: ["denyh", "socket"],
      o: ["open", "l2"],
    };
    for (const [name, [network, level]] of Object.entries(nets))
      netctxOk("create", name, "--level", level, "--network", network, "--ip", ADDR[name as Name]);
    await Promise.all(
      (Object.keys(ADDR) as Name[]).map(async (name) => {
        const place = at(name) as ProbePlace;
        const hosts = [ADDR[name]];
        for (const port of [80, 81])
          servers.push(await startServing({ op: "serve", proto: "tcp", port, hosts }, place));
        servers.push(await startServing({ op: "serve", proto: "udp", port: 80, hosts }, place));
      }),
    );
    // The host's services, on the gateways.
    for (const gw of [GW_I, GW_J, GW_D])
      servers.push(await startServing({ op: "serve", proto: "tcp", port: 80, hosts: [gw] }));
    for (const name of ["i1", "i2", "j1", "j2", "d1", "d2"] as const)
      assert.ok(ping(contextNetns(name), ADDR.o), name);
  });

  after(async () => {
    for (const s of servers) await s.stop();
    netctxOk("policy", "rm", "--ignore", "i1-to-i2", "d1-to-d2", "o-to-ds");
    netctxOk("rm", ...Object.keys(ADDR));
    netctxOk("network", "rm", "iso", "isor", "deny", "denyh", "open");
  });

  test("--isolate: two contexts of the network cannot reach each other, both reach the gateway and beyond", async () => {
    // A policy does not open an isolated pair (it selects i2: only i1 may reach it, and isolation forbids that).
    netctxOk("policy", "add", "i1-to-i2", "--to", "i2", "--from", "i1");
    assert.deepEqual(
      await reach({
        "i1->i2 tcp 80": () => tcp(at("i1"), ADDR.i2, 80),
        "i2->i1 udp 80": () => udp(at("i2"), ADDR.i1, 80),
        "i1 ping i2": async () => ping(contextNetns("i1"), ADDR.i2),
        "j1->j2 tcp 80": () => tcp(at("j1"), ADDR.j2, 80),
        "j2 ping j1": async () => ping(contextNetns("j2"), ADDR.j1),
        "i1->gateway tcp 80": () => tcp(at("i1"), GW_I, 80),
        "i2->gateway tcp 80": () => tcp(at("i2"), GW_I, 80),
        "j1->gateway tcp 80": () => tcp(at("j1"), GW_J, 80),
        "j2->gateway tcp 80": () => tcp(at("j2"), GW_J, 80),
        "host->i1 tcp 80": () => tcp(at("test"), ADDR.i1, 80),
        "i1->o tcp 80": () => tcp(at("i1"), ADDR.o, 80),
        "o->i1 tcp 81": () => tcp(at("o"), ADDR.i1, 81),
        "j1->i1 tcp 81": () => tcp(at("j1"), ADDR.i1, 81),
      }),
      {
        "i1->i2 tcp 80": false,
        "i2->i1 udp 80": false,
        "i1 ping i2": false,
        "j1->j2 tcp 80": false,
        "j2 ping j1": false,
        "i1->gateway tcp 80": true,
        "i2->gateway tcp 80": true,
        "j1->gateway tcp 80": true,
        "j2->gateway tcp 80": true,
        "host->i1 tcp 80": true,
        "i1->o tcp 80": true,
        "o->i1 tcp 81": true,
        "j1->i1 tcp 81": true,
      },
    );
    netctxOk("policy", "rm", "i1-to-i2");
  });

  test("--default-deny: every context of the network accepts only what a policy allows", async () => {
    const before = await reach({
      "d1->d2 tcp 80": () => tcp(at("d1"), ADDR.d2, 80),
      "o->d1 tcp 80": () => tcp(at("o"), ADDR.d1, 80),
      "host->d2 tcp 80": () => tcp(at("test"), ADDR.d2, 80),
      "o->dl tcp 80": () => tcp(at("o"), ADDR.dl, 80),
      "o->ds tcp 80": () => tcp(at("o"), ADDR.ds, 80),
      "d1->dl udp 80": () => udp(at("d1"), ADDR.dl, 80),
      // Their own connections, and the replies, flow.
      "d1->o tcp 80": () => tcp(at("d1"), ADDR.o, 80),
      "d2->gateway tcp 80": () => tcp(at("d2"), GW_D, 80),
      "ds->o tcp 80": () => tcp(at("ds"), ADDR.o, 80),
      "dl->d1 tcp 80": () => tcp(at("dl"), ADDR.d1, 80),
    });
    assert.deepEqual(before, {
      "d1->d2 tcp 80": false,
      "o->d1 tcp 80": false,
      "host->d2 tcp 80": false,
      "o->dl tcp 80": false,
      "o->ds tcp 80": false,
      "d1->dl udp 80": false,
      "d1->o tcp 80": true,
      "d2->gateway tcp 80": true,
      "ds->o tcp 80": true,
      "dl->d1 tcp 80": false,
    });
    netctxOk("policy", "add", "d1-to-d2", "--to", "d2", "--from", "d1", "--port", "80");
    netctxOk("policy", "add", "o-to-ds", "--to", "ds", "--from", "o", "--port", "81");
    assert.deepEqual(
      await reach({
        "d1->d2 tcp 80": () => tcp(at("d1"), ADDR.d2, 80),
        "d1->d2 tcp 81": () => tcp(at("d1"), ADDR.d2, 81),
        "o->d2 tcp 80": () => tcp(at("o"), ADDR.d2, 80),
        "o->ds tcp 81": () => tcp(at("o"), ADDR.ds, 81),
        "o->ds tcp 80": () => tcp(at("o"), ADDR.ds, 80),
        "o->dl tcp 81": () => tcp(at("o"), ADDR.dl, 81),
      }),
      {
        "d1->d2 tcp 80": true,
        "d1->d2 tcp 81": false,
        "o->d2 tcp 80": false,
        "o->ds tcp 81": true,
        "o->ds tcp 80": false,
        "o->dl tcp 81": false,
      },
    );
  });
});
