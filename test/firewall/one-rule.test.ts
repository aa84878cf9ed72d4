/**
 * Issue 17, "tests that let real bugs through": each isolation rule proven on its own. A round trip hides a missing
 * rule whenever another rule drops the reply (or ARP anti-spoofing stops the neighbour round first), so these tests
 * count one-way traffic where it lands, with an nft counter of the test's own: in an outside namespace, in the
 * receiving context, or on the host right after the anti-spoofing hook (prerouting priority -250 > -300).
 * Each "must stay 0" is paired with the same traffic that does arrive (a network that is not internal, the
 * context's real source), so a broken path cannot pass for a working rule.
 *
 * Each rule removed alone from src/firewall (2026-12, this branch), the test that claims it, and what happened
 * (re-measured on branch i17-rules for pub6h, the ND/MLD from :: rules and the forward iif . saddr rules):
 *  nat-objects.ts postrouting
 *   ip saddr . ip daddr @intra4 return        traffic.test (nat on; routed not NATed)        FAILS
 *   ip6 saddr . ip6 daddr @intra6 return      traffic.test (nat on, bridged v6 echo)          FAILS
 *   ip saddr @nat4 masquerade                 traffic.test, l2/nat                           FAILS
 *   ip6 saddr @nat6 masquerade                traffic.test (nat on)                          FAILS
 *  nat-objects.ts forward
 *   iifname . oifname @same_if accept         hardening/internal                             FAILS
 *   iifname @internal_ifs iif . ip saddr      one-rule: l3 context's source (accept_local)   FAILS (was: none)
 *   iifname @internal_ifs iif . ip6 saddr     one-rule: l3 context's source                  FAILS (was: none)
 *   iifname @internal_ifs oif . ip saddr      one-rule: internal, IPv4 leaves (was: none)     FAILS
 *   iifname @internal_ifs oif . ip6 saddr     one-rule: internal, IPv6 leaves (was: none)     FAILS
 *   oifname @internal_ifs iif . ip daddr      one-rule: IPv4 from the outside (was: none)     FAILS
 *   oifname @internal_ifs iif . ip6 daddr     one-rule: IPv6 from the outside (was: none)     FAILS
 *  nat-objects.ts input
 *   internal ND accept                        hardening/internal, one-rule                   FAILS
 *   iifname @internal_ifs iif . ip daddr      hardening/internal                             FAILS
 *   iifname @internal_ifs iif . ip6 daddr     hardening/internal                             FAILS
 *  antispoof-objects.ts, bridge table
 *   iifname != @as_ports accept               antispoof (--no-antispoof control)             FAILS
 *   ether saddr != @as_mac                    one-rule: bridge MAC (was: hidden by ARP)      FAILS
 *   arp saddr ether != @as_mac                one-rule: ARP sender MAC (was: none)           FAILS
 *   arp saddr ip != @as_ip4                   antispoof (claimArp)                           FAILS
 *   ether type arp accept / ip / ip6 accept   everything (all such traffic dropped)          FAILS
 *   ip saddr != @as_ip4                       one-rule: bridge source (was: hidden by ARP)   FAILS
 *   ip6 saddr != @as_ip6                      one-rule: bridge source, IPv6                  FAILS
 *   icmp type redirect drop                   hardening/bridge-ipv6                          FAILS
 *   ND: ip6 saddr :: nd-neighbor-solicit acc. one-rule: DAD from :: (was: none, nodad)      FAILS (bridge 0)
 *     (same rule without its @as_nd match)    one-rule: DAD from ::, the gateway's address    FAILS (1 passes)
 *   ND: ip6 saddr :: mld-listener-report acc. one-rule: DAD from :: (was: none)              FAILS (bridge 0)
 *   nd-neighbor-advert target != @as_nd       hardening/bridge-ipv6                          FAILS
 *   nd-router-advert, nd-redirect drop        hardening/bridge-ipv6                          FAILS
 *   final drop (VLAN tags)                    hardening/bridge-ipv6                          FAILS
 *  antispoof-objects.ts, inet table (routed veths)
 *   iifname != @as_ports accept               one-rule (outside unreachable)                 FAILS
 *   ether saddr != @as_mac                    one-rule: routed MAC (was: hidden by ARP)      FAILS
 *   ip saddr != @as_ip4                       one-rule: routed source (was: none)            FAILS
 *   ip6 saddr != @as_ip6                      one-rule: routed source, IPv6 (was: none)      FAILS
 *   icmp type redirect drop                   one-rule: router-only ICMP (was: none)         FAILS
 *   ND: ip6 saddr :: nd-neighbor-solicit acc. one-rule: DAD from :: (was: none)              FAILS (routed 0)
 *   ND: ip6 saddr :: mld-listener-report acc. one-rule: DAD from :: (was: none)              FAILS (routed 0)
 *   nd-neighbor-advert target != @as_nd       one-rule: router-only ICMP, NA (was: none)     FAILS
 *   nd-router-advert, nd-redirect drop        one-rule: router-only ICMP (was: none)         FAILS
 *  antispoof-objects.ts, arp table (routed veths)
 *   iifname != @as_ports accept               antispoof, one-rule                            FAILS
 *   arp saddr ether != @as_mac                one-rule: ARP sender MAC (was: none)           FAILS
 *   arp saddr ip != @as_ip4                   antispoof (routed claimArp)                    FAILS
 *  publish-objects.ts
 *   dnat ... map @pub4h                       publish: one host address                      FAILS
 *   dnat ... map @pub4 / @pub6                publish: from outside, udp, hairpin, host      FAILS
 *   dnat ... map @pub6h                       publish: one IPv6 host address (was: none)     FAILS
 *   ct status dnat ... @intra4/@intra6 masq.  publish: hairpin                               FAILS
 *   chain publish_pre / publish_out removed   publish                                        FAILS
 * Note on the forward chain's "iifname . saddr" rules: an earlier review called them redundant (a packet from an
 * internal network M with a source of another network N leaves through a non-internal interface: the oif rule drops
 * it; or into another internal network: the daddr rule does). That holds only while the route follows the
 * destination. An l3 context's policy rule "from ADDR lookup TABLE" routes by source: a packet from M spoofing the
 * address of an l3 context on an internal host network N, to a destination in M, leaves through N's device by that
 * table's default route, and passes both the oif rule (oif and source of N) and the daddr rule (arrival interface
 * and destination of M). Only the iif . saddr rules stop it (without anti-spoofing on M). For IPv4 the kernel drops a
 * local source address as martian unless accept_local is set on the arrival interface (measured: with the rule
 * removed and accept_local 0 the test still passes), so the test sets it; IPv6 has no such check.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, test } from "node:test";
import { formatIp, linkLocalOf, parseIp } from "../../src/net/cidr.ts";
import { type Frame, sendFrames } from "../hardening/frames.ts";
import { NETCTX, netctxOk } from "../utils/cli.ts";
import { type IpLink, ipLink, neighbourMac, txPackets } from "../utils/kernel-oracle.ts";
import { addVethNetns, contextNetns, delVethNetns, HOST_NETNS, inNetns } from "../utils/netns.ts";
import { must } from "../utils/shell.ts";
import { eventually } from "../utils/wait.ts";

/** The outside: a namespace the host reaches through veth v-out, with no route back to any context. */
const OUT = { name: "out17", hostIfname: "v-out17", v4: "10.201.0.2", v6: "fd00:201::2" };

/** One context per network; `internal` ones give themselves the default route --internal withheld. */
const NETS = [
  { net: "ibr", driver: "bridge", internal: true, ctx: "ib", v4: "10.81.0", v6: "fd81::" },
  { net: "irt", driver: "routed", internal: true, ctx: "ir", v4: "10.82.0", v6: "fd82::" },
  { net: "obr", driver: "bridge", internal: false, ctx: "ob", v4: "10.83.0", v6: "fd83::" },
  { net: "ort", driver: "routed", internal: false, ctx: "or", v4: "10.84.0", v6: "fd84::" },
] as const;

/** Anti-spoofing: a routed context and two contexts on a bridge; `.200`/`::200` is the address none of them owns. */
const RT = { net: "srt", ctx: "sr", v4: "10.85.0", v6: "fd85::" };
const BR = { net: "sbr", a: "sa", b: "sb", v4: "10.86.0", v6: "fd86::" };

const run = (netns: string, argv: string[]) => {
  const a = inNetns(netns, argv);
  return spawnSync(a[0]!, a.slice(1), { encoding: "utf8", timeout: 20_000 });
};
const mustIn = (netns: string, argv: string[]) => must(inNetns(netns, argv));
const ctxNs = contextNetns;
const FAKE_MAC = "02:aa:17:00:00:fe";
const macOf = (netns: string, ifname = "eth0") => ipLink<IpLink>(ifname, netns).address!;

/**
 * Packets matching `match` that reached the prerouting hook of the netns at `netns` (priority -250: after our
 * anti-spoofing chains at -300, before conntrack and routing) while `traffic` ran. The counting table is the test's.
 */
function arrivals(netns: string, match: string, traffic: () => void): number {
  const nft = (script: string) => {
    const a = inNetns(netns, ["nft", "-f", "-"]);
    const r = spawnSync(a[0]!, a.slice(1), { encoding: "utf8", input: script });
    if (r.status !== 0) throw new Error(`nft in ${netns}: ${r.stderr}`);
  };
  nft(`table inet i17count
delete table inet i17count
table inet i17count {
  chain pre {
    type filter hook prerouting priority -250;
    ${match} counter
  }
}`);
  traffic();
  const listed = JSON.parse(mustIn(netns, ["nft", "-j", "list", "table", "inet", "i17count"])) as {
    nftables: { rule?: { expr: { counter?: { packets: number } }[] } }[];
  };
  nft("delete table inet i17count");
  const rule = listed.nftables.find((o) => o.rule)?.rule;
  const counter = rule?.expr.find((e) => e.counter)?.counter;
  if (!counter) throw new Error(`no counter in ${JSON.stringify(listed)}`);
  return counter.packets;
}

/** Three echo requests from inside `ctx` (from `source` when given); the answer does not matter. */
function pings(ctx: string, dst: string, source?: string): () => void {
  return () => {
    run(ctxNs(ctx), [
      "ping",
      "-n",
      "-q",
      "-c",
      "3",
      "-i",
      "0.05",
      "-W",
      "0.5",
      ...(source ? ["-I", source] : []),
      dst,
    ]);
  };
}

/** `traffic` with the count of packets `ctx`'s eth0 sent meanwhile: 0 arrivals prove nothing unless they left. */
function sentBy(ctx: string, traffic: () => void): () => number {
  return () => {
    const before = txPackets("eth0", ctxNs(ctx));
    traffic();
    return txPackets("eth0", ctxNs(ctx)) - before;
  };
}

/** Echo requests from `ctx` to the outside that reached it, and how many `ctx` sent. */
function toOutside(ctx: string, family: 4 | 6, source?: string): { sent: number; arrived: number } {
  const dst = family === 4 ? OUT.v4 : OUT.v6;
  const match =
    family === 4 ? `ip daddr ${dst} icmp type echo-request` : `ip6 daddr ${dst} icmpv6 type echo-request`;
  let sent = 0;
  const arrived = arrivals(`/run/netns/${OUT.name}`, match, () => {
    sent = sentBy(ctx, pings(ctx, dst, source))();
  });
  return { sent, arrived };
}

before(() => {
  addVethNetns({
    name: OUT.name,
    hostIfname: OUT.hostIfname,
    hostAddresses: ["10.201.0.1/24", "fd00:201::1/64"],
    addresses: [`${OUT.v4}/24`, `${OUT.v6}/64`],
    // A way in for the ingress tests; none of it leads anywhere the host does not route.
    routes: ["10.80.0.0/12 via 10.201.0.1", "fd80::/12 via fd00:201::1"],
  });
  for (const n of NETS) {
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
      ...(n.internal ? ["--internal"] : []),
    );
    netctxOk("create", n.ctx, "--level", "l2", "--network", n.net, "--ip", `${n.v4}.10`, "--ip", `${n.v6}10`);
    // Root inside gives itself the way out: only the host's rules may stop it.
    netctxOk("exec", n.ctx, "--", "ip", "-4", "route", "replace", "default", "via", `${n.v4}.1`);
    netctxOk("exec", n.ctx, "--", "ip", "-6", "route", "replace", "default", "via", `${n.v6}1`);
  }
});

after(() => {
  delVethNetns(OUT);
});

/** Per network, the echo requests that got through: none from an internal one, all 3 from the others. */
const WANT = Object.fromEntries(NETS.map((n) => [n.net, n.internal ? 0 : "all"]));
const tally = (n: (typeof NETS)[number], arrived: number) => (!n.internal && arrived >= 3 ? "all" : arrived);

for (const family of [4, 6] as const) {
  test(`internal networks: no IPv${family} packet leaves for the outside (counted there), other networks' do`, () => {
    const got: Record<string, number | string> = {};
    for (const n of NETS) {
      const { sent, arrived } = toOutside(n.ctx, family);
      assert.ok(sent >= 3, `${n.net}: ${n.ctx} sent ${sent} packets`);
      got[n.net] = tally(n, arrived);
    }
    assert.deepEqual(got, WANT, `IPv${family} echo requests that reached the outside`);
  });

  test(`internal networks: no IPv${family} packet from the outside reaches a context (counted inside), others' do`, () => {
    const got: Record<string, number | string> = {};
    for (const n of NETS) {
      const dst = family === 4 ? `${n.v4}.10` : `${n.v6}10`;
      const match =
        family === 4
          ? `ip saddr ${OUT.v4} icmp type echo-request`
          : `ip6 saddr ${OUT.v6} icmpv6 type echo-request`;
      const arrived = arrivals(ctxNs(n.ctx), match, () => {
        run(`/run/netns/${OUT.name}`, ["ping", "-n", "-q", "-c", "3", "-i", "0.05", "-W", "0.5", dst]);
      });
      got[n.net] = tally(n, arrived);
    }
    assert.deepEqual(got, WANT, `IPv${family} echo requests from the outside that reached the context`);
  });
}

test("anti-spoofing, routed: a packet with a source address not the context's own does not get past its veth", () => {
  netctxOk(
    "network",
    "create",
    RT.net,
    "--driver",
    "routed",
    "--subnet",
    `${RT.v4}.0/24`,
    "--subnet",
    `${RT.v6}/64`,
  );
  netctxOk(
    "create",
    RT.ctx,
    "--level",
    "l2",
    "--network",
    RT.net,
    "--ip",
    `${RT.v4}.10`,
    "--ip",
    `${RT.v6}10`,
  );
  netctxOk("exec", RT.ctx, "--", "ip", "addr", "add", `${RT.v4}.200/32`, "dev", "eth0");
  netctxOk("exec", RT.ctx, "--", "ip", "addr", "add", `${RT.v6}200/128`, "dev", "eth0", "nodad");
  const atHost = (match: string, traffic: () => void) =>
    arrivals(HOST_NETNS, `iifname "nc-${RT.ctx}" ${match}`, traffic);
  for (const [family, gw, own, spoofed] of [
    [4, `${RT.v4}.1`, `${RT.v4}.10`, `${RT.v4}.200`],
    [6, `${RT.v6}1`, `${RT.v6}10`, `${RT.v6}200`],
  ] as const) {
    const saddr = family === 4 ? "ip saddr" : "ip6 saddr";
    const echo = family === 4 ? "icmp type echo-request" : "icmpv6 type echo-request";
    assert.ok(atHost(`${saddr} ${own} ${echo}`, pings(RT.ctx, gw, own)) >= 3, `IPv${family} real source`);
    let sent = 0;
    const spoofedArrived = atHost(`${saddr} ${spoofed}`, () => {
      sent = sentBy(RT.ctx, pings(RT.ctx, gw, spoofed))();
    });
    assert.ok(sent >= 3, `IPv${family}: the spoofed pings were not sent (${sent})`);
    assert.equal(spoofedArrived, 0, `IPv${family}: a spoofed source got past nc-${RT.ctx}`);
  }
});

test("anti-spoofing, routed: a frame from a MAC not the context's own does not get past its veth", () => {
  // A new MAC flushes the context's neighbours, permanent ones too: pin the gateway again, so that no ARP round
  // (which the arp table's MAC rule would stop) precedes the frame.
  const gwMac = neighbourMac(`${RT.v4}.1`, { netns: ctxNs(RT.ctx) })!;
  const realMac = macOf(ctxNs(RT.ctx));
  netctxOk("exec", RT.ctx, "--", "ip", "link", "set", "eth0", "address", "02:aa:17:00:00:01");
  pinNeighbour(RT.ctx, `${RT.v4}.1`, gwMac);
  const n = arrivals(
    HOST_NETNS,
    `iifname "nc-${RT.ctx}" icmp type echo-request`,
    pings(RT.ctx, `${RT.v4}.1`),
  );
  assert.equal(n, 0, "a frame with a foreign source MAC got past the routed veth");
  netctxOk("exec", RT.ctx, "--", "ip", "link", "set", "eth0", "address", realMac);
  pinNeighbour(RT.ctx, `${RT.v4}.1`, gwMac);
});

test("anti-spoofing, routed: router-only ICMP (redirect, RA, ND redirect) and an NA for the gateway do not get past its veth", () => {
  netctxOk(
    "network",
    "create",
    "ort3",
    "--driver",
    "routed",
    "--subnet",
    "10.89.0.0/24",
    "--subnet",
    "fd89::/64",
    "--no-antispoof",
  );
  netctxOk("create", "ur3", "--level", "l2", "--network", "ort3", "--ip", "10.89.0.10", "--ip", "fd89::10");
  /** Router messages from `ctx` (its own addresses, MAC and link-local), and how many reached the host past nc-CTX. */
  const routerTalk = (ctx: string, v4: string, v6: string) => {
    const mac = macOf(ctxNs(ctx));
    const gwMac = neighbourMac(`${v4}.1`, { netns: ctxNs(ctx) })!;
    const ll = linkLocalOf(mac);
    const frames: Frame[] = [
      {
        kind: "redirect4",
        srcMac: mac,
        dstMac: gwMac,
        src: `${v4}.10`,
        dst: `${v4}.1`,
        dest: OUT.v4,
        gateway: `${v4}.10`,
      },
      { kind: "ra", srcMac: mac, dstMac: "33:33:00:00:00:01", src: ll, dst: "ff02::1", prefix: "fd99::" },
      { kind: "redirect6", srcMac: mac, dstMac: gwMac, src: ll, dst: `${v6}1`, target: ll, dest: OUT.v6 },
      // A Neighbour Advertisement claiming the gateway's address (its source is the context's own link-local).
      { kind: "na", srcMac: mac, dstMac: gwMac, src: ll, dst: `${v6}1`, target: `${v6}1` },
    ];
    const gwHex = `0x${parseIp(`${v6}1`, "gateway").addr.toString(16).padStart(32, "0")}`;
    const send = () => sendFrames({ ctx }, frames);
    return {
      redirect4: arrivals(HOST_NETNS, `iifname "nc-${ctx}" icmp type redirect`, send),
      ra: arrivals(HOST_NETNS, `iifname "nc-${ctx}" icmpv6 type nd-router-advert`, send),
      redirect6: arrivals(HOST_NETNS, `iifname "nc-${ctx}" icmpv6 type nd-redirect`, send),
      naForGateway: arrivals(
        HOST_NETNS,
        `iifname "nc-${ctx}" icmpv6 type nd-neighbor-advert @th,64,128 ${gwHex}`,
        send,
      ),
    };
  };
  const guarded = routerTalk(RT.ctx, RT.v4, RT.v6);
  const unguarded = routerTalk("ur3", "10.89.0", "fd89::");
  netctxOk("rm", "ur3");
  netctxOk("network", "rm", "ort3");
  assert.deepEqual(
    unguarded,
    { redirect4: 1, ra: 1, redirect6: 1, naForGateway: 1 },
    "--no-antispoof: the counting sees them",
  );
  assert.deepEqual(
    guarded,
    { redirect4: 0, ra: 0, redirect6: 0, naForGateway: 0 },
    "router messages got past a guarded routed veth",
  );
});

/** Inside `from`, a permanent neighbour entry for `peer`'s address: no ARP or ND round ever precedes the packet. */
function pinNeighbour(from: string, peerIp: string, peerMac: string): void {
  mustIn(ctxNs(from), [
    "ip",
    "neigh",
    "replace",
    peerIp,
    "lladdr",
    peerMac,
    "dev",
    "eth0",
    "nud",
    "permanent",
  ]);
}

test("anti-spoofing, bridge: a spoofed source address reaches no peer even when no ARP/ND is needed", () => {
  netctxOk(
    "network",
    "create",
    BR.net,
    "--driver",
    "bridge",
    "--subnet",
    `${BR.v4}.0/24`,
    "--subnet",
    `${BR.v6}/64`,
  );
  netctxOk("create", BR.a, "--level", "l2", "--network", BR.net, "--ip", `${BR.v4}.10`, "--ip", `${BR.v6}10`);
  netctxOk("create", BR.b, "--level", "l2", "--network", BR.net, "--ip", `${BR.v4}.11`, "--ip", `${BR.v6}11`);
  mustIn(ctxNs(BR.a), ["ip", "addr", "add", `${BR.v4}.200/32`, "dev", "eth0"]);
  mustIn(ctxNs(BR.a), ["ip", "addr", "add", `${BR.v6}200/128`, "dev", "eth0", "nodad"]);
  const bMac = macOf(ctxNs(BR.b));
  for (const [family, peer, own, spoofed] of [
    [4, `${BR.v4}.11`, `${BR.v4}.10`, `${BR.v4}.200`],
    [6, `${BR.v6}11`, `${BR.v6}10`, `${BR.v6}200`],
  ] as const) {
    pinNeighbour(BR.a, peer, bMac);
    const saddr = family === 4 ? "ip saddr" : "ip6 saddr";
    const echo = family === 4 ? "icmp type echo-request" : "icmpv6 type echo-request";
    assert.ok(
      arrivals(ctxNs(BR.b), `${saddr} ${own} ${echo}`, pings(BR.a, peer, own)) >= 3,
      `IPv${family} real`,
    );
    let sent = 0;
    const spoofedArrived = arrivals(ctxNs(BR.b), `${saddr} ${spoofed}`, () => {
      sent = sentBy(BR.a, pings(BR.a, peer, spoofed))();
    });
    assert.ok(sent >= 3, `IPv${family}: the spoofed pings were not sent (${sent})`);
    assert.equal(spoofedArrived, 0, `IPv${family}: a spoofed source crossed the bridge`);
  }
  mustIn(ctxNs(BR.a), ["ip", "addr", "del", `${BR.v4}.200/32`, "dev", "eth0"]);
  mustIn(ctxNs(BR.a), ["ip", "addr", "del", `${BR.v6}200/128`, "dev", "eth0"]);
});

/** The solicited-node multicast address of `ip` and its MAC (RFC 4291 2.7.1, RFC 2464 7). */
function solicitedNode(ip: string): { ip: string; mac: string } {
  const low = parseIp(ip, "target").addr & 0xffffffn;
  const hex = low.toString(16).padStart(6, "0");
  return {
    ip: formatIp(6, 0xff0200000000000000000001ff000000n | low),
    mac: `33:33:ff:${hex.slice(0, 2)}:${hex.slice(2, 4)}:${hex.slice(4)}`,
  };
}

/** An ND target as the `@th,64,128` payload match reads it. */
const ndTarget = (ip: string) => `0x${parseIp(ip, "target").addr.toString(16).padStart(32, "0")}`;

/**
 * `ctx`'s kernel runs DAD for its link-local address again: deleted and re-added without nodad, the address is
 * tentative for a moment, and with no valid address to send from the kernel sends its DAD Neighbour Solicitation
 * (RFC 4862 5.4.2) and its MLD reports for the solicited-node group (RFC 3590) from `::`. Returns how many of each
 * reached the host's prerouting (past the anti-spoofing chains), and what the host sees of two hand-made DAD
 * solicitations from `::`: one for the context's own link-local address, one for the gateway's address (which
 * the NS rule's `@as_nd` must refuse, or a context could make the gateway's DAD fail).
 */
function dadFromUnspecified(ctx: string, gateway: string) {
  const ns = ctxNs(ctx);
  const mac = macOf(ns);
  const ll = linkLocalOf(mac);
  const from = `ether saddr ${mac} ip6 saddr ::`;
  const redoDad = () => {
    mustIn(ns, ["ip", "-6", "addr", "del", `${ll}/64`, "dev", "eth0"]);
    mustIn(ns, ["ip", "-6", "addr", "add", `${ll}/64`, "dev", "eth0"]);
    const tentative = () => mustIn(ns, ["ip", "-6", "addr", "show", "dev", "eth0", "tentative"]).trim();
    assert.equal(eventually(tentative, "", 8000), "", `${ctx}: DAD of ${ll} did not end`);
    const flags = mustIn(ns, ["ip", "-6", "addr", "show", "dev", "eth0", "to", `${ll}/128`]);
    assert.doesNotMatch(flags, /dadfailed/, `${ctx}: DAD of its own link-local address failed`);
  };
  const dadNs = (target: string): Frame => {
    const group = solicitedNode(target);
    return { kind: "ns", srcMac: mac, dstMac: group.mac, src: "::", dst: group.ip, target };
  };
  const nsFor = (target: string) => `${from} icmpv6 type nd-neighbor-solicit @th,64,128 ${ndTarget(target)}`;
  return {
    kernelNs: arrivals(HOST_NETNS, nsFor(ll), redoDad),
    kernelMld: arrivals(
      HOST_NETNS,
      `${from} icmpv6 type { mld-listener-report, mld2-listener-report }`,
      redoDad,
    ),
    ownNs: arrivals(HOST_NETNS, nsFor(ll), () => sendFrames({ ctx }, [dadNs(ll)])),
    gatewayNs: arrivals(HOST_NETNS, nsFor(gateway), () => sendFrames({ ctx }, [dadNs(gateway)])),
  };
}

test("anti-spoofing: DAD solicitations and MLD reports from :: for the context's own addresses pass (bridge and routed), not for the gateway's", () => {
  const got = {
    bridge: dadFromUnspecified(BR.a, `${BR.v6}1`),
    routed: dadFromUnspecified(RT.ctx, `${RT.v6}1`),
  };
  // At least one of each; the kernel may repeat an MLD report.
  const seen = (n: number) => (n > 0 ? "some" : 0);
  const shape = (d: ReturnType<typeof dadFromUnspecified>) => ({
    kernelNs: seen(d.kernelNs),
    kernelMld: seen(d.kernelMld),
    ownNs: d.ownNs,
    gatewayNs: d.gatewayNs,
  });
  const want = { kernelNs: "some", kernelMld: "some", ownNs: 1, gatewayNs: 0 };
  assert.deepEqual(
    { bridge: shape(got.bridge), routed: shape(got.routed) },
    { bridge: want, routed: want },
    JSON.stringify(got),
  );
});

/**
 * An ARP request from the context's own MAC and address whose sender hardware address is another MAC: a host that
 * took it would send the context's traffic to that MAC. Returns the MAC the host holds for the address afterwards.
 */
function arpClaimsMac(ctx: string, hostIfname: string, own: string, gateway: string): string | undefined {
  sendFrames({ ctx }, [{ kind: "arp", srcMac: macOf(ctxNs(ctx)), sha: FAKE_MAC, spa: own, tpa: gateway }]);
  return neighbourMac(own, { dev: hostIfname });
}

test("anti-spoofing: an ARP sender MAC not the context's own is dropped (bridge and routed), taken where unguarded", () => {
  netctxOk("network", "create", "obr2", "--driver", "bridge", "--subnet", "10.87.0.0/24", "--no-antispoof");
  netctxOk("network", "create", "ort2", "--driver", "routed", "--subnet", "10.88.0.0/24", "--no-antispoof");
  netctxOk("create", "ua", "--level", "l2", "--network", "obr2", "--ip", "10.87.0.10");
  netctxOk("create", "ur", "--level", "l2", "--network", "ort2", "--ip", "10.88.0.10");
  const got = {
    bridge: arpClaimsMac(BR.a, `nc-${BR.net}`, `${BR.v4}.10`, `${BR.v4}.1`),
    routed: arpClaimsMac(RT.ctx, `nc-${RT.ctx}`, `${RT.v4}.10`, `${RT.v4}.1`),
    unguardedBridge: arpClaimsMac("ua", "nc-obr2", "10.87.0.10", "10.87.0.1"),
    unguardedRouted: arpClaimsMac("ur", "nc-ur", "10.88.0.10", "10.88.0.1"),
  };
  netctxOk("rm", "ua", "ur");
  netctxOk("network", "rm", "obr2", "ort2");
  assert.notEqual(got.bridge, FAKE_MAC, "bridge: the host took a forged ARP sender MAC");
  assert.notEqual(got.routed, FAKE_MAC, "routed: the host took a forged ARP sender MAC");
  assert.deepEqual([got.unguardedBridge, got.unguardedRouted], [FAKE_MAC, FAKE_MAC], "--no-antispoof: taken");
});

test("anti-spoofing, bridge: a frame from a MAC not the context's own reaches no peer even when no ARP is needed", () => {
  const bMac = macOf(ctxNs(BR.b));
  pinNeighbour(BR.a, `${BR.v4}.11`, bMac);
  const real = arrivals(
    ctxNs(BR.b),
    `ip saddr ${BR.v4}.10 icmp type echo-request`,
    pings(BR.a, `${BR.v4}.11`),
  );
  assert.ok(real >= 3, "real MAC");
  mustIn(ctxNs(BR.a), ["ip", "link", "set", "eth0", "address", "02:aa:17:00:00:02"]);
  pinNeighbour(BR.a, `${BR.v4}.11`, bMac); // the new MAC flushed it
  const n = arrivals(ctxNs(BR.b), `ip saddr ${BR.v4}.10 icmp type echo-request`, pings(BR.a, `${BR.v4}.11`));
  assert.equal(n, 0, "a frame with a foreign source MAC crossed the bridge");
  netctxOk("rm", BR.a, BR.b);
  netctxOk("network", "rm", BR.net);
});

/**
 * The forward chain's "iifname @internal_ifs iifname . saddr" rules: the one packet only they stop. A context on an
 * internal network (without anti-spoofing) sends from the address of an l3 context on another internal network, a
 * host network: the host's policy rule "from that address" picks the l3 context's table, whose default route leaves
 * through the host network's device, so the oif rule passes (source and oif are of one network) and the daddr rule
 * too (the destination is in the sender's own network). IPv4 needs accept_local on the arrival interface, or the
 * kernel drops a source that is a local address before routing (martian); IPv6 has no such check. Counted at the
 * router behind the host network; the l3 context's own packets to the same place are the control that arrives.
 */
test("internal networks: a source spoofed from an l3 context's address does not leave through its table's route", () => {
  const HN = { net: "ihn17", v4: "10.90.0", v6: "fd90::", ctx: "l3c17" };
  const IN = { net: "irn17", v4: "10.91.0", v6: "fd91::", ctx: "in17" };
  const RTR = { name: "rtr17", hostIfname: "v-rtr17" };
  netctxOk(
    "network",
    "create",
    HN.net,
    "--driver",
    "host",
    "--internal",
    "--subnet",
    `${HN.v4}.0/24`,
    "--subnet",
    `${HN.v6}/64`,
  );
  addVethNetns({
    ...RTR,
    master: `nc-${HN.net}`,
    addresses: [`${HN.v4}.254/24`, `${HN.v6}254/64`],
  });
  netctxOk(
    "create",
    HN.ctx,
    "--level",
    "l3",
    "--network",
    HN.net,
    "--ip",
    `${HN.v4}.10`,
    "--ip",
    `${HN.v6}10`,
    "--route",
    `default via ${HN.v4}.254`,
    "--route",
    `default via ${HN.v6}254`,
  );
  netctxOk(
    "network",
    "create",
    IN.net,
    "--driver",
    "routed",
    "--internal",
    "--no-antispoof",
    "--subnet",
    `${IN.v4}.0/24`,
    "--subnet",
    `${IN.v6}/64`,
  );
  netctxOk(
    "create",
    IN.ctx,
    "--level",
    "l2",
    "--network",
    IN.net,
    "--ip",
    `${IN.v4}.10`,
    "--ip",
    `${IN.v6}10`,
  );
  netctxOk("exec", IN.ctx, "--", "ip", "-4", "route", "replace", "default", "via", `${IN.v4}.1`);
  netctxOk("exec", IN.ctx, "--", "ip", "-6", "route", "replace", "default", "via", `${IN.v6}1`);
  netctxOk("exec", IN.ctx, "--", "ip", "addr", "add", `${HN.v4}.10/32`, "dev", "eth0");
  netctxOk("exec", IN.ctx, "--", "ip", "addr", "add", `${HN.v6}10/128`, "dev", "eth0", "nodad");
  must(["sysctl", "-qw", `net.ipv4.conf.nc-${IN.ctx}.accept_local=1`]);
  /** Three UDP datagrams from `src` to `dst` port 9, sent by whoever `exec` runs them as. */
  const udpFrom = (exec: string[], src: string, dst: string) => {
    const family = src.includes(":") ? "AF_INET6" : "AF_INET";
    const py = `import socket; s = socket.socket(socket.${family}, socket.SOCK_DGRAM); s.bind(("${src}", 0))
for _ in range(3): s.sendto(b"i17", ("${dst}", 9))`;
    const argv = [...exec, "python3", "-c", py];
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: 20_000 });
    assert.equal(r.status, 0, `${argv.slice(0, 4).join(" ")}: ${r.stderr}`);
  };
  const got: Record<string, number | string> = {};
  for (const [family, spoofed, dst] of [
    [4, `${HN.v4}.10`, `${IN.v4}.99`],
    [6, `${HN.v6}10`, `${IN.v6}99`],
  ] as const) {
    const match = `${family === 4 ? "ip" : "ip6"} saddr ${spoofed} udp dport 9`;
    const atRouter = (traffic: () => void) => arrivals(`/run/netns/${RTR.name}`, match, traffic);
    const own = atRouter(() => udpFrom([NETCTX, "exec", HN.ctx, "--"], spoofed, dst));
    got[`l3 context itself, IPv${family}`] = own;
    let sent = 0;
    got[`spoofed from ${IN.net}, IPv${family}`] = atRouter(() => {
      sent = sentBy(IN.ctx, () => udpFrom(inNetns(ctxNs(IN.ctx), []), spoofed, dst))();
    });
    assert.ok(sent >= 3, `IPv${family}: the spoofed datagrams were not sent (${sent})`);
  }
  netctxOk("rm", HN.ctx, IN.ctx);
  delVethNetns(RTR);
  netctxOk("network", "rm", HN.net, IN.net);
  assert.deepEqual(got, {
    "l3 context itself, IPv4": 3,
    [`spoofed from ${IN.net}, IPv4`]: 0,
    "l3 context itself, IPv6": 3,
    [`spoofed from ${IN.net}, IPv6`]: 0,
  });
});

test("teardown", () => {
  netctxOk("rm", ...NETS.map((n) => n.ctx), RT.ctx);
  netctxOk("network", "rm", ...NETS.map((n) => n.net), RT.net);
});
