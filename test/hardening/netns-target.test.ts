/**
 * Root inside an l2 context keeps CAP_NET_ADMIN to manage its own stack. Netlink names other namespaces by nsid
 * (IFLA_TARGET_NETNSID, IFLA_LINK_NETNSID), and a context's namespace holds one for the host's as soon as its veth's
 * peer is dumped: with the capability counting in the host's user namespace, a request through that nsid changed,
 * deleted and created links in the host. Each attack here runs through `netctx exec` and must be refused, the
 * host's links unchanged; the same request without a target (its own stack) must work, and the attack itself is
 * shown to work from the same netns entered by bare nsenter as host root. A context in a namespace the host's user
 * namespace owns (a container runtime's, through CNI) gets no CAP_NET_ADMIN at all. Root of a shared-stack context
 * (the host's netns, which holds an nsid for every l2 context's) owns no l2 context's user namespace: the kernel gives
 * a user namespace's owner every capability in it, and a link dump through the nsid, which the kernel checks against
 * the target alone, listed an l2 context's links while root owned them.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { after, before, test } from "node:test";
import { NSID_PY } from "../../src/audit/netlink-nsid-script.ts";
import { NETCTX, netctxOk } from "../utils/cli.ts";
import { cniOk } from "../utils/cni-runtime.ts";
import { ipj } from "../utils/kernel-oracle.ts";
import { addNetns, contextNetns, delNetns, inNetns } from "../utils/netns.ts";
import { must } from "../utils/shell.ts";

const PY = "/usr/bin/python3";
const VICTIM = "nctxvictim0";
const VICTIM_PEER = "nctxvictim1";

/**
 * Raw rtnetlink in Python, on the audit probe's own helpers (netlink-nsid-script.ts: nl_talk answers the errno name,
 * "OK" for success, of an ack or of a dump's end): every request reports how it ended.
 */
const NETLINK = `
import errno, json, socket, struct, sys
def err(e): return errno.errorcode.get(e.errno, str(e)) if isinstance(e, OSError) and e.errno else str(e)
${NSID_PY}
IFLA_INFO_DATA, VETH_INFO_PEER = 2, 1
def nsids(): return nl_nsids()[2]
def make_bridge(ifname, nsid=None):
    return nl_talk(NL_NEWLINK, NL_ACK | NL_CREATE | NL_EXCL, NL_IFINFO + nl_target(nsid) + nl_str(IFLA_IFNAME, ifname) + nl_kind("bridge"))[0]
def delete(ifname, nsid=None):
    return nl_talk(NL_DELLINK, NL_ACK, NL_IFINFO + nl_target(nsid) + nl_str(IFLA_IFNAME, ifname))[0]
def dump(nsid=None):
    return nl_talk(NL_GETLINK, NL_DUMP, NL_IFINFO + nl_target(nsid))[0]
`;

/** The attacks, against every nsid the context's namespace holds; the controls, on its own stack. */
const ATTACKS = `${NETLINK}
victim, victim_index = sys.argv[1], int(sys.argv[2])
result = {"nsids": nsids(), "create": {}, "delete": {}, "macvlan": {}, "veth_out": {}, "dump": {}}
for nsid in result["nsids"]:
    k = str(nsid)
    result["create"][k] = make_bridge("nctxmade", nsid)
    result["delete"][k] = delete(victim, nsid)
    # A macvlan of its own on the host's link: frames of its choosing on the host's segment.
    result["macvlan"][k] = nl_talk(NL_NEWLINK, NL_ACK | NL_CREATE | NL_EXCL, NL_IFINFO + nl_str(IFLA_IFNAME, "nctxmv")
        + nl_s32(IFLA_LINK, victim_index) + nl_s32(IFLA_LINK_NETNSID, nsid) + nl_kind("macvlan"))[0]
    # A veth whose far end lands in the host.
    peer = nl_attr(IFLA_INFO_DATA, nl_attr(VETH_INFO_PEER, NL_IFINFO + nl_str(IFLA_IFNAME, "nctxout1")))
    result["veth_out"][k] = nl_talk(NL_NEWLINK, NL_ACK | NL_CREATE | NL_EXCL, NL_IFINFO + nl_str(IFLA_IFNAME, "nctxout0")
        + nl_s32(IFLA_LINK_NETNSID, nsid) + nl_attr(IFLA_LINKINFO, nl_str(IFLA_INFO_KIND, "veth") + peer))[0]
    result["dump"][k] = dump(nsid)
result["own_create"] = make_bridge("nctxmine")
result["own_delete"] = delete("nctxmine")
print(json.dumps(result))
`;

interface Attacks {
  nsids: number[];
  create: Record<string, string>;
  delete: Record<string, string>;
  macvlan: Record<string, string>;
  veth_out: Record<string, string>;
  dump: Record<string, string>;
  own_create: string;
  own_delete: string;
}

const REFUSED = new Set(["EPERM", "EACCES"]);

function hostLinks(): string[] {
  return ipj<{ ifname: string }>(["link", "show"]).map((l) => l.ifname);
}

function victimIndex(): number {
  return ipj<{ ifindex: number }>(["link", "show", VICTIM])[0]!.ifindex;
}

function execAttacks(context: string): { attacks: Attacks; stderr: string } {
  const r = spawnSync(NETCTX, ["exec", context, "--", PY, "-c", ATTACKS, VICTIM, String(victimIndex())], {
    encoding: "utf8",
    timeout: 30_000,
  });
  assert.equal(r.status, 0, `exec ${context}: ${r.stderr}${r.stdout}`);
  return { attacks: JSON.parse(r.stdout.trim().split("\n").pop()!) as Attacks, stderr: r.stderr };
}

function assertHostUnchanged(before: string[]): void {
  assert.deepEqual(hostLinks(), before, "the host's links are the ones it had");
}

function assertAllRefused(attacks: Attacks): void {
  for (const kind of ["create", "delete", "macvlan", "veth_out", "dump"] as const)
    for (const [nsid, outcome] of Object.entries(attacks[kind]))
      assert.ok(REFUSED.has(outcome), `${kind} through nsid ${nsid} is refused (got ${outcome})`);
}

before(() => {
  must(["ip", "link", "add", VICTIM, "type", "veth", "peer", "name", VICTIM_PEER]);
  netctxOk("network", "create", "tn", "--driver", "bridge", "--subnet", "10.66.0.0/24");
  netctxOk("create", "x", "--level", "l2", "--network", "tn");
});

after(() => {
  spawnSync("ip", ["link", "del", VICTIM]);
});

test("root in an l2 context reaches no other namespace through an nsid, and still manages its own", () => {
  const before = hostLinks();
  const { attacks } = execAttacks("x");
  assert.ok(attacks.nsids.length > 0, "the context's namespace holds an nsid (the host's, through its veth)");
  assertAllRefused(attacks);
  assert.equal(attacks.own_create, "OK", "a link inside its own namespace is its to make");
  assert.equal(attacks.own_delete, "OK", "and to delete");
  assertHostUnchanged(before);
});

test("the same requests from the context's namespace as host root do reach the host (the attack is real)", () => {
  const argv = inNetns(contextNetns("x"), [
    PY,
    "-c",
    `${NETLINK}\nprint(json.dumps({str(n): [make_bridge("nctxmade", n), delete("nctxmade", n)] for n in nsids()}))`,
  ]);
  const before = hostLinks();
  const outcomes = JSON.parse(execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8" })) as Record<
    string,
    [string, string]
  >;
  assert.ok(
    Object.values(outcomes).some(([made, gone]) => made === "OK" && gone === "OK"),
    `one nsid names the host: ${JSON.stringify(outcomes)}`,
  );
  assert.deepEqual(hostLinks(), before);
});

test("a context in a runtime's namespace (owned by the host's user namespace) gets no CAP_NET_ADMIN", () => {
  const netns = addNetns("runtime-ns");
  try {
    const conf = { cniVersion: "1.0.0", name: "tcni", type: "netctx", subnets: ["10.67.0.0/24"] };
    cniOk("ADD", conf, { id: "runtimecontainer", netns });
    const name = netctxOk("ls", "--json")
      .trim()
      .match(/"name":\s*"(c[0-9a-f]{11})"/)?.[1];
    assert.ok(name, "the CNI ADD made a context");
    const before = hostLinks();
    const { attacks, stderr } = execAttacks(name);
    assert.ok(attacks.nsids.length > 0, "the runtime's namespace holds an nsid for the host's");
    assertAllRefused(attacks);
    assert.ok(
      REFUSED.has(attacks.own_create),
      `no CAP_NET_ADMIN even on its own stack (got ${attacks.own_create})`,
    );
    assert.match(stderr, /CAP_NET_ADMIN withheld/);
    assertHostUnchanged(before);
    cniOk("DEL", conf, { id: "runtimecontainer", netns });
  } finally {
    delNetns("runtime-ns");
  }
});

test("root in a shared-stack context lists no l2 context's links through the host's nsids", () => {
  netctxOk("network", "create", "hostnet", "--driver", "host", "--subnet", "10.68.0.0/24");
  netctxOk("create", "s", "--level", "socket", "--network", "hostnet");
  try {
    const script = `${NETLINK}\nprint(json.dumps({"own": dump(), "through": {str(n): dump(n) for n in nsids()}}))`;
    const r = spawnSync(NETCTX, ["exec", "s", "--", PY, "-c", script], { encoding: "utf8", timeout: 30_000 });
    assert.equal(r.status, 0, `exec s: ${r.stderr}${r.stdout}`);
    const got = JSON.parse(r.stdout.trim().split("\n").pop()!) as {
      own: string;
      through: Record<string, string>;
    };
    assert.equal(got.own, "OK", "its own namespace's links are its to list");
    // x's namespace among them: the host holds an nsid for it (x's veth's peer is on the host's bridge).
    assert.ok(Object.keys(got.through).length > 0, "the host's netns holds nsids");
    for (const [nsid, outcome] of Object.entries(got.through))
      assert.ok(REFUSED.has(outcome), `a dump through nsid ${nsid} is refused (got ${outcome})`);
    // The same dumps as host root do list: every nsid names a namespace the request reaches.
    const asRoot = JSON.parse(
      execFileSync(PY, ["-c", `${NETLINK}\nprint(json.dumps({str(n): dump(n) for n in nsids()}))`], {
        encoding: "utf8",
      }),
    ) as Record<string, string>;
    assert.ok(
      Object.values(asRoot).every((o) => o === "OK"),
      `host root: ${JSON.stringify(asRoot)}`,
    );
  } finally {
    netctxOk("rm", "s");
  }
});
