/**
 * Policy on macvlan networks (issue 19), on the wire. The parent is a veth whose other end sits in "mvp-router", a
 * namespace playing the segment's router (two addresses: the allowed source and another one). On an `--isolate`
 * network the contexts' macvlans are in private mode and the policy program runs on the parent both ways
 * (networks/macvlan.ts); a bridge-mode network refuses what it cannot enforce. The attacks run as root inside a
 * context through `netctx exec`, with what it keeps there (CAP_NET_ADMIN, CAP_NET_RAW).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { detachProgram, progFdById, progInfo, queryPrograms } from "../../src/kernel/bpf/attach.ts";
import { closeFd } from "../../src/kernel/bpf/syscall.ts";
import { netctx, netctxJson, netctxOk } from "../utils/cli.ts";
import { ipLink } from "../utils/kernel-oracle.ts";
import { addVethNetns, contextNetns, delVethNetns, netnsPath } from "../utils/netns.ts";
import { type ProbePlace, probe, type RunningProbe, startServing } from "../utils/socket-probe.ts";

const ROUTER = { name: "mvp-router", hostIfname: "mvlan0" };
const GW = "10.95.0.254";
const OTHER = "10.95.0.253";
const RAW_FRAME = join(import.meta.dirname, "..", "utils", "raw-frame.py");
const ROGUE_MACVLAN = join(import.meta.dirname, "..", "utils", "rogue-macvlan.py");

const routerNs = () => netnsPath(ROUTER.name);

interface Inspect {
  addresses: string[];
}
const v4 = (name: string) =>
  netctxJson<Inspect>("inspect", name)
    .addresses.find((a) => !a.includes(":"))!
    .split("/")[0]!;

async function tcp(from: ProbePlace, to: string, port: number): Promise<boolean> {
  const [r] = await probe(from, [{ op: "tcp", host: to, port, timeoutMs: 800 }]);
  return r!.ok;
}
async function udp(from: ProbePlace, to: string, port: number): Promise<boolean> {
  const [r] = await probe(from, [{ op: "udp", host: to, port, reply: true }]);
  return r!.ok;
}

/** Probes at once (blocked ones wait for their timeout). */
async function reach(probes: Record<string, () => Promise<boolean>>): Promise<Record<string, boolean>> {
  const names = Object.keys(probes);
  const results = await Promise.all(names.map((n) => probes[n]!()));
  return Object.fromEntries(names.map((n, i) => [n, results[i]!]));
}

function rxPackets(ifname: string, netns: string): number {
  const r = spawnSync("ip", ["-n", netns.split("/").pop()!, "-j", "-s", "link", "show", ifname], {
    encoding: "utf8",
  });
  return (JSON.parse(r.stdout) as { stats64: { rx: { packets: number } } }[])[0]!.stats64.rx.packets;
}

const macOf = (ifname: string, netns: string) => ipLink<{ address: string }>(ifname, netns).address;

/** Root inside the context runs argv (the sandbox of `netctx exec`). */
function asRootIn(context: string, ...argv: string[]) {
  return netctx("exec", context, "--", ...argv);
}

describe("policy on macvlan networks", () => {
  const servers: RunningProbe[] = [];
  let A = "";
  let B = "";
  const a: ProbePlace = { netns: contextNetns("ma") };
  const b: ProbePlace = { netns: contextNetns("mb") };
  const router: ProbePlace = { netns: routerNs() };

  before(async () => {
    addVethNetns({ ...ROUTER, addresses: [`${GW}/24`, `${OTHER}/24`] });
    netctxOk(
      "network",
      "create",
      "mvi",
      "--driver",
      "macvlan",
      "--parent",
      ROUTER.hostIfname,
      "--subnet",
      "10.95.0.0/24",
      "--gateway",
      GW,
      "--isolate",
      "--default-deny",
    );
    netctxOk("create", "ma", "--level", "l2", "--network", "mvi");
    netctxOk("create", "mb", "--level", "l2", "--network", "mvi");
    A = v4("ma");
    B = v4("mb");
    netctxOk("policy", "add", "web", "--to", "ma", "--from", `${GW}/32`, "--port", "8080/tcp");
    netctxOk("policy", "add", "web-b", "--to", "mb", "--from", "network:mvi", "--port", "8080/tcp");
    netctxOk("policy", "add", "out", "--egress", "--from", "mb", "--to", `${GW}/32`, "--port", "9090/tcp");
    for (const [place, proto, port] of [
      [a, "tcp", 8080],
      [a, "tcp", 8081],
      [a, "udp", 8080],
      [b, "tcp", 8080],
      [router, "tcp", 9090],
      [router, "tcp", 9091],
    ] as const)
      servers.push(await startServing({ op: "serve", proto, port }, place));
  });

  after(() => {
    for (const s of servers) s.stop();
    for (const c of ["ma", "mb", "mc"]) netctx("rm", "--force", c);
    delVethNetns(ROUTER);
  });

  test("an isolating network puts its contexts' macvlans in private mode", () => {
    const eth0 = ipLink<{ linkinfo?: { info_data?: { mode?: string } } }>("eth0", contextNetns("ma"));
    assert.equal(eth0.linkinfo?.info_data?.mode, "private");
  });

  test("an allow opens exactly its port from its source; replies flow; isolate and egress hold", async () => {
    const got = await reach({
      "router -> a tcp/8080 (allowed)": () => tcp(router, A, 8080),
      "router -> a tcp/8081": () => tcp(router, A, 8081),
      "router -> a udp/8080": () => udp(router, A, 8080),
      "a -> b tcp/8080 (isolate, though web-b allows network:mvi)": () => tcp(a, B, 8080),
      "b -> a tcp/8080 (isolate)": () => tcp(b, A, 8080),
      "b -> router tcp/9090 (egress allowed)": () => tcp(b, GW, 9090),
      "b -> router tcp/9091 (egress not allowed)": () => tcp(b, GW, 9091),
      "a -> router tcp/9091 (a is not egress-selected)": () => tcp(a, GW, 9091),
    });
    assert.deepEqual(got, {
      "router -> a tcp/8080 (allowed)": true,
      "router -> a tcp/8081": false,
      "router -> a udp/8080": false,
      "a -> b tcp/8080 (isolate, though web-b allows network:mvi)": false,
      "b -> a tcp/8080 (isolate)": false,
      "b -> router tcp/9090 (egress allowed)": true,
      "b -> router tcp/9091 (egress not allowed)": false,
      "a -> router tcp/9091 (a is not egress-selected)": true,
    });
    // Another source on the segment: the router's second address, as the source towards a.
    spawnSync("ip", ["-n", ROUTER.name, "route", "add", `${A}/32`, "dev", "eth0", "src", OTHER]);
    try {
      assert.equal(await tcp(router, A, 8080), false, "another source -> a tcp/8080");
    } finally {
      spawnSync("ip", ["-n", ROUTER.name, "route", "del", `${A}/32`]);
    }
    assert.equal(await tcp(router, A, 8080), true, "the allowed source again");
  });

  test("root inside a context: nothing of the hooks to reach, bridge mode and PACKET_QDISC_BYPASS do not reach a sibling", async () => {
    const hooks = asRootIn("ma", "tc", "filter", "show", "dev", ROUTER.hostIfname, "egress");
    assert.notEqual(hooks.code, 0, "the parent is not in the context's netns");
    const mode = asRootIn("ma", "ip", "link", "set", "eth0", "type", "macvlan", "mode", "bridge");
    assert.equal(mode.code, 0, `root inside may change its own macvlan's mode: ${mode.stderr}`);
    try {
      assert.equal(await tcp(a, B, 8080), false, "a in bridge mode -> b (private) tcp/8080");
      const aMac = macOf("eth0", contextNetns("ma"));
      const bMac = macOf("eth0", contextNetns("mb"));
      const before = rxPackets("eth0", contextNetns("mb"));
      const sent = asRootIn("ma", "python3", RAW_FRAME, "eth0", bMac, aMac, A, B, "8080", "50", "bypass");
      assert.equal(sent.code, 0, sent.stderr);
      const reached = rxPackets("eth0", contextNetns("mb")) - before;
      assert.ok(
        reached < 5,
        `b received ${reached} of 50 raw frames sent to its MAC with PACKET_QDISC_BYPASS`,
      );
      // Unicast between bridge-mode macvlans passes the parent's receive path (macvlan_queue_xmit hands it to the
      // parent first); a broadcast frame does not, and b's stack would take the unicast datagram inside it.
      const before2 = rxPackets("eth0", contextNetns("mb"));
      const broadcast = asRootIn(
        "ma",
        "python3",
        RAW_FRAME,
        "eth0",
        "ff:ff:ff:ff:ff:ff",
        aMac,
        A,
        B,
        "8080",
        "50",
      );
      assert.equal(broadcast.code, 0, broadcast.stderr);
      const flooded = rxPackets("eth0", contextNetns("mb")) - before2;
      assert.ok(flooded < 5, `b received ${flooded} of 50 broadcast frames carrying a datagram for it`);
      // The same frames towards the router arrive: the sender works, and nothing filters what a may send it.
      const routerMac = macOf("eth0", routerNs());
      const r0 = rxPackets("eth0", routerNs());
      asRootIn("ma", "python3", RAW_FRAME, "eth0", routerMac, aMac, A, GW, "9091", "50", "bypass");
      assert.ok(rxPackets("eth0", routerNs()) - r0 >= 50, "the raw frames to the router arrive");
    } finally {
      asRootIn("ma", "ip", "link", "set", "eth0", "type", "macvlan", "mode", "private");
    }
  });

  test("root inside a context cannot send from an address or a MAC not its own", async () => {
    // b may send only to the router's tcp/9090. As root inside it takes an address nobody was given, and a route
    // that makes it the source towards the router: the router would answer it, and b answer ARP for it.
    const spoof = "10.95.0.77";
    const add = asRootIn("mb", "ip", "addr", "add", `${spoof}/32`, "dev", "eth0");
    assert.equal(add.code, 0, add.stderr);
    const route = asRootIn("mb", "ip", "route", "add", `${GW}/32`, "dev", "eth0", "src", spoof);
    assert.equal(route.code, 0, route.stderr);
    try {
      const got = await reach({
        "b as 10.95.0.77 -> router tcp/9091": () => tcp(b, GW, 9091),
        "b as 10.95.0.77 -> router tcp/9090": () => tcp(b, GW, 9090),
      });
      assert.deepEqual(got, {
        "b as 10.95.0.77 -> router tcp/9091": false,
        "b as 10.95.0.77 -> router tcp/9090": false,
      });
    } finally {
      asRootIn("mb", "ip", "route", "del", `${GW}/32`);
      asRootIn("mb", "ip", "addr", "del", `${spoof}/32`, "dev", "eth0");
    }
    assert.equal(await tcp(b, GW, 9090), true, "b from its own address again");

    // Forged frames with the qdisc bypassed: its own MAC with another source address, and another MAC with its own.
    const aMac = macOf("eth0", contextNetns("ma"));
    const routerMac = macOf("eth0", routerNs());
    for (const [mac, source] of [
      [aMac, spoof],
      [aMac, GW],
      ["02:00:00:00:00:99", A],
    ] as const) {
      const r0 = rxPackets("eth0", routerNs());
      const sent = asRootIn(
        "ma",
        "python3",
        RAW_FRAME,
        "eth0",
        routerMac,
        mac,
        source,
        GW,
        "9091",
        "50",
        "bypass",
      );
      assert.equal(sent.code, 0, sent.stderr);
      const arrived = rxPackets("eth0", routerNs()) - r0;
      assert.ok(arrived < 5, `${arrived} of 50 frames from ${mac} as ${source} reached the router`);
    }

    // A new MAC on its macvlan: nothing it sends leaves, until it takes its own back.
    const set = asRootIn("ma", "ip", "link", "set", "eth0", "address", "02:00:00:00:00:98");
    assert.equal(set.code, 0, set.stderr);
    try {
      assert.equal(await tcp(a, GW, 9091), false, "a with a MAC of its choosing -> router tcp/9091");
    } finally {
      asRootIn("ma", "ip", "link", "set", "eth0", "address", aMac);
    }
    assert.equal(await tcp(a, GW, 9091), true, "a with its own MAC again");
  });

  test("a macvlan of its own on the parent (through the host's netns id): refused to root inside, and one made anyway sends nothing", async () => {
    const nsid = ipLink<{ link_netnsid?: number }>("eth0", contextNetns("ma")).link_netnsid;
    assert.equal(typeof nsid, "number", "the context's netns holds an id for the host's");
    const parent = ipLink<{ ifindex: number }>(ROUTER.hostIfname).ifindex;
    const rogue = ["python3", ROGUE_MACVLAN, String(nsid), String(parent), "rogue0", "02:00:00:00:00:97"];
    // Root inside holds CAP_NET_ADMIN in its netns's own user namespace only (kernel/netns-owned.c).
    const refused = asRootIn("ma", ...rogue);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stdout, /Operation not permitted/);
    // Where the kernel lets it (a runtime's container given CAP_NET_ADMIN in the host's user namespace), made here
    // by host root in the context's netns, the parent's guards are what stops it.
    const inside = (...argv: string[]) =>
      spawnSync("nsenter", [`--net=${contextNetns("ma")}`, "--", ...argv], { encoding: "utf8" });
    const made = inside(...rogue);
    assert.equal(made.status, 0, `rogue macvlan: ${made.stdout}${made.stderr}`);
    for (const argv of [
      ["ip", "addr", "add", "10.95.0.78/24", "dev", "rogue0"],
      ["ip", "link", "set", "rogue0", "up"],
      ["ip", "route", "add", `${GW}/32`, "dev", "rogue0"],
      ["ip", "route", "add", `${B}/32`, "dev", "rogue0"],
    ]) {
      const r = inside(...argv);
      assert.equal(r.status, 0, `${argv.join(" ")}: ${r.stderr}`);
    }
    const got = await reach({
      "rogue -> router tcp/9091": () => tcp(a, GW, 9091),
      "rogue -> b tcp/8080": () => tcp(a, B, 8080),
    });
    assert.deepEqual(got, { "rogue -> router tcp/9091": false, "rogue -> b tcp/8080": false });
    inside("ip", "link", "del", "rogue0");
    assert.equal(await tcp(a, GW, 9091), true, "a through its own macvlan again");
  });

  test("audit --reach takes macvlan contexts: between them measured against the policies, the host's cells n/a", async () => {
    // The audit starts listeners of its own on the policies' ports.
    await Promise.all(servers.splice(0).map((server) => server.stop()));
    const r = netctx("audit", "--reach", "--json", "ma", "mb");
    const report = JSON.parse(r.stdout) as {
      ok: boolean;
      skipped: string[];
      cells: { from: string; to: string; port: string; expected: string; measured: string; ok: boolean }[];
    };
    assert.deepEqual(report.skipped, []);
    const between = report.cells.filter((c) => c.to !== "host" && c.from !== "host" && c.to !== "world");
    // web-b allows network:mvi to b's tcp/8080, and isolate wins: every cell between them is blocked, and measured so.
    assert.ok(between.length >= 4, JSON.stringify(report.cells.map((c) => `${c.from}>${c.to}`)));
    assert.ok(
      between.every((c) => c.expected === "blocked" && c.measured === "blocked" && c.ok),
      JSON.stringify(between),
    );
    const others = report.cells.filter((c) => !between.includes(c));
    assert.ok(
      others.every((c) => c.expected === "n/a" && c.ok),
      JSON.stringify(others),
    );
    assert.equal(report.ok, true);
    assert.equal(r.code, 0);

    // Rules deleted by hand: both macvlans in bridge mode, the policy programs off the parent. The audit sees it.
    for (const c of ["ma", "mb"]) {
      const r = spawnSync(
        "ip",
        ["-n", `netctx-${c}`, "link", "set", "eth0", "type", "macvlan", "mode", "bridge"],
        {
          encoding: "utf8",
        },
      );
      assert.equal(r.status, 0, `bridge mode for ${c}: ${r.stderr}`);
      // Neighbour entries that failed while private mode kept them apart would hold the probes back.
      spawnSync("ip", ["-n", `netctx-${c}`, "neigh", "flush", "dev", "eth0"]);
    }
    const parent = ipLink<{ ifindex: number }>(ROUTER.hostIfname).ifindex;
    for (const type of ["TCX_INGRESS", "TCX_EGRESS"] as const)
      for (const id of queryPrograms(parent, type)) {
        const fd = progFdById(id);
        detachProgram(parent, fd, type);
        closeFd(fd);
      }
    const broken = netctx("audit", "--reach", "--json", "ma", "mb");
    assert.notEqual(broken.code, 0, `a difference exits non-zero: ${broken.stdout.slice(0, 3000)}`);
    const differing = (JSON.parse(broken.stdout) as typeof report).cells.filter((c) => !c.ok);
    assert.ok(
      differing.some(
        (c) => c.from === "ma" && c.to === "mb" && c.expected === "blocked" && c.measured === "allowed",
      ),
      JSON.stringify(differing),
    );
  });

  test("what cannot be enforced is refused in one line: default-deny or a policy on a bridge-mode macvlan network", () => {
    const deny = netctx(
      "network",
      "create",
      "mvd",
      "--driver",
      "macvlan",
      "--parent",
      ROUTER.hostIfname,
      "--subnet",
      "10.96.0.0/24",
      "--default-deny",
    );
    assert.notEqual(deny.code, 0);
    assert.match(deny.stderr, /default-deny: .*--isolate/);
    assert.equal(deny.stderr.trim().split("\n").length, 1);

    netctxOk(
      "network",
      "create",
      "mvb",
      "--driver",
      "macvlan",
      "--parent",
      ROUTER.hostIfname,
      "--subnet",
      "10.97.0.0/24",
    );
    netctxOk("create", "mc", "--level", "l2", "--network", "mvb");
    const policies = netctxJson<unknown[]>("policy", "ls", "--json");
    const bad = netctx("policy", "add", "bad", "--to", "mc", "--from", "world");
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /policy bad: .*"mc" on network "mvb": .*macvlan driver.*--isolate/);
    assert.equal(bad.stderr.trim().split("\n").length, 1);
    assert.deepEqual(netctxJson<unknown[]>("policy", "ls", "--json"), policies, "nothing recorded");
    // A context made later that a policy would select on such a network is refused too.
    netctxOk("policy", "add", "lab", "--to", "role=lab", "--from", "world");
    const later = netctx("create", "md", "--level", "l2", "--network", "mvb", "--label", "role=lab");
    assert.notEqual(later.code, 0);
    assert.match(later.stderr, /policy lab: .*"md" on network "mvb"/);
    assert.equal(netctx("inspect", "md").code === 0, false, "no record left");
    netctxOk("policy", "rm", "lab");
  });

  test("a source guard made on a parent whose contexts an earlier netctx made admits them before it attaches", async () => {
    // The guard goes (as on a host an earlier netctx set up); mc, already on the parent, is its first context then.
    spawnSync("ip", ["-n", ROUTER.name, "addr", "add", "10.97.0.254/24", "dev", "eth0"]);
    const parent = ipLink<{ ifindex: number }>(ROUTER.hostIfname).ifindex;
    for (const id of queryPrograms(parent, "TCX_EGRESS")) {
      const fd = progFdById(id);
      detachProgram(parent, fd, "TCX_EGRESS");
      closeFd(fd);
    }
    const served = await startServing({ op: "serve", proto: "tcp", port: 9092 }, router);
    try {
      const c: ProbePlace = { netns: contextNetns("mc") };
      assert.equal(await tcp(c, "10.97.0.254", 9092), true, "mc -> router before any guard");
      netctxOk("create", "me", "--level", "l2", "--network", "mvb");
      assert.equal(await tcp(c, "10.97.0.254", 9092), true, "mc -> router once me made the guard again");
      assert.equal(await tcp({ netns: contextNetns("me") }, "10.97.0.254", 9092), true, "me -> router");
    } finally {
      await served.stop();
      netctx("rm", "me");
    }
  });

  test("the source guard leaves the parent with its last macvlan network", () => {
    const guards = () => {
      const parent = ipLink<{ ifindex: number }>(ROUTER.hostIfname).ifindex;
      return queryPrograms(parent, "TCX_EGRESS").filter((id) => {
        const fd = progFdById(id);
        try {
          return progInfo(fd).name === "nctx_mv_src";
        } finally {
          closeFd(fd);
        }
      }).length;
    };
    assert.equal(guards(), 1);
    for (const c of ["ma", "mb", "mc"]) netctxOk("rm", "--force", c);
    netctxOk("network", "rm", "mvb");
    assert.equal(guards(), 1, "mvi is still on the parent");
    for (const p of ["web", "web-b", "out"]) netctxOk("policy", "rm", p);
    netctxOk("network", "rm", "mvi");
    assert.equal(guards(), 0);
  });
});
