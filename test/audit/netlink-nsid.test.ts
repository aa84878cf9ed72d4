/**
 * The netlink-other-netns verdicts on their own (src/audit/netlink-nsid.ts classifyNsid), without a kernel: refusals
 * read "blocked" only with their proof (the auditor found from outside that a tried nsid names the target, the marker
 * is still there under its index, nothing of the probe's appeared, and for l2 the control on its own stack worked or
 * was refused for want of CAP_NET_ADMIN there too); without it the same refusals read "inconclusive", and any request
 * that worked, a marker gone or a link of the probe's in the target reads "possible".
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Call } from "../../src/audit/evidence.ts";
import {
  classifyNsid,
  type NsidPhase1,
  type NsidScene,
  type NsidSeen,
} from "../../src/audit/netlink-nsid.ts";
import type { Subject } from "../../src/audit/subjects.ts";

const ok = (call: string): Call => ({ call, ok: true });
const no = (call: string, errno: string): Call => ({ call, ok: false, errno });

function scene(holder: string | undefined): NsidScene {
  const params = { create: "nkt0c", marker: "nkt0m", markerIndex: 7, nsid: 0, macvlan: "nkt0v" };
  return {
    tag: "nkt",
    group: 0x6e6b0001,
    spaces: [undefined],
    release: () => {},
    targets: new Map([
      [
        "x",
        {
          what: "the host's netns",
          prefix: "nkt0",
          ...(holder ? { holder } : {}),
          params: holder ? { ...params, control: "nkt0o" } : params,
        },
      ],
    ]),
  };
}

/** What the sandbox answers for an l2 context: every request through the host's nsid refused, its own stack its own. */
function refusedAll(): NsidPhase1 {
  return {
    listed: ok("RTM_GETLINK dump"),
    nsids: ok("RTM_GETNSID dump"),
    found: [0],
    tries: [
      {
        nsid: 0,
        create: no("create", "EACCES"),
        macvlan: no("macvlan", "EPERM"),
        dump: no("dump", "EACCES"),
        delete: no("delete", "EACCES"),
        undo: [],
      },
    ],
    control: { create: ok("own create"), delete: ok("own delete") },
  };
}

/** The outside view after a clean run; `without` drops what the outside did not find. */
const clean = (over: Partial<NsidSeen> = {}, without: ("nsid" | "markerIndexAfter")[] = []) => {
  const seen: NsidSeen = { nsid: 0, markerIndexAfter: 7, appeared: [], ...over };
  for (const k of without) delete seen[k];
  return new Map([["x", seen]]);
};

/** holder: the namespace holding the nsid, an l2 context's; null: the host's (a shared-stack context). */
function verdict(e: NsidPhase1, seen: Map<string, NsidSeen>, holder: string | null = "/run/netns/x") {
  const out = classifyNsid({ s: { name: "x" } as Subject, e, scene: scene(holder ?? undefined), seen });
  assert.equal(out.length, 1);
  assert.equal(out[0]!.probe, "netlink-other-netns");
  return out[0]!.result;
}

test("refused with its proof reads blocked", () => {
  assert.equal(verdict(refusedAll(), clean()), "blocked");
  // A shared-stack context has no stack of its own to control on: the proof is the nsid and the marker.
  const { control: _, ...noControl } = refusedAll();
  assert.equal(verdict(noControl, clean(), null), "blocked");
  // A runtime's namespace: no CAP_NET_ADMIN even over its own stack, so none over a namespace it names.
  const runtime = refusedAll();
  runtime.control = { create: no("own create", "EPERM"), delete: no("own delete", "not tried") };
  assert.equal(verdict(runtime, clean()), "blocked");
});

test("refused without its proof reads inconclusive", () => {
  assert.equal(verdict(refusedAll(), clean({}, ["nsid"])), "inconclusive", "no nsid names the target");
  assert.equal(verdict(refusedAll(), clean({ nsid: 3 })), "inconclusive", "the target's nsid was not tried");
  const { control: _, ...noControl } = refusedAll();
  assert.equal(verdict(noControl, clean()), "inconclusive", "l2 without its control");
  const broken = refusedAll();
  broken.control = { create: no("own create", "EINVAL"), delete: no("own delete", "not tried") };
  assert.equal(verdict(broken, clean()), "inconclusive", "a control refused for another reason");
  const odd = refusedAll();
  odd.tries[0]!.create = no("create", "EINVAL");
  assert.equal(
    verdict(odd, clean()),
    "inconclusive",
    "a request refused for another reason than a permission",
  );
  const noMacvlan = refusedAll();
  delete noMacvlan.tries[0]!.macvlan;
  assert.equal(verdict(noMacvlan, clean()), "inconclusive", "the macvlan was not tried");
  assert.equal(
    verdict(refusedAll(), clean({ error: "EPERM" })),
    "inconclusive",
    "the outside could not look",
  );
});

test("anything that reached the target reads possible", () => {
  for (const k of ["create", "macvlan", "dump", "delete"] as const) {
    const e = refusedAll();
    e.tries[0]![k] = ok(k);
    assert.equal(verdict(e, clean()), "possible", k);
  }
  assert.equal(verdict(refusedAll(), clean({}, ["markerIndexAfter"])), "possible", "marker gone");
  assert.equal(verdict(refusedAll(), clean({ markerIndexAfter: 9 })), "possible", "marker replaced");
  assert.equal(verdict(refusedAll(), clean({ appeared: ["nkt0c"] })), "possible", "a link of the probe's");
  // Through an nsid that names some other namespace: still a reach out of its own.
  const other = refusedAll();
  other.found = [0, 1];
  const { macvlan: _, ...elsewhere } = other.tries[0]!;
  other.tries.push({ ...elsewhere, nsid: 1, dump: ok("dump") });
  assert.equal(verdict(other, clean()), "possible", "another nsid");
});
