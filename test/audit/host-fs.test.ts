/**
 * The host file system escapes' verdicts on their own (src/audit/host-fs.ts classifyHostFs), without a kernel: a
 * refusal reads "blocked" only with its proof (the probe saw the auditor's directory, the listener answered the
 * auditor before and after, the probe's plain file showed up on the host, no block device listed, the auditor's
 * own open worked); without it the same refusal reads "inconclusive", and any success reads "possible".
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Call } from "../../src/audit/evidence.ts";
import {
  classifyHostFs,
  type HostFsPhase1,
  type HostFsScene,
  type HostFsSeen,
} from "../../src/audit/host-fs.ts";
import type { Subject } from "../../src/audit/subjects.ts";

const s = { name: "x" } as unknown as Subject;
const token = "netctx-audit-t-probe-x";
const ok = (call: string, value?: string): Call => ({ call, ok: true, ...(value ? { value } : {}) });
const no = (call: string, errno: string): Call => ({ call, ok: false, errno });
const file = (exists: boolean, setuid = false) => ({ exists, regular: exists, setuid, text: "t" });

function scene(over: Partial<HostFsScene> = {}): HostFsScene {
  return {
    dir: { path: "/var/lib/netctx-audit-t", ino: 7, control: ok("host: create") },
    // A daemon's socket under /run and a tmux-like one under /tmp.
    sockets: ["/run/netctx-audit-t.sock", "/tmp/netctx-audit-t-tmux/default"].map((path) => ({
      path,
      seen: [],
      control: "c",
      before: ok("host: connect"),
      close: () => {},
    })),
    block: { path: "/dev/loop0", dev: [7, 0], control: ok("host: open") },
    tmp: new Map(),
    made: [],
    release: () => {},
    ...over,
  };
}

/** What the sandbox answers: every escape refused, with its proof. */
function refusedAll(): HostFsPhase1 {
  return {
    write: { ...no("open", "EROFS"), ino: 7 },
    sockets: [no("connect", "ENOENT"), no("connect", "ENOENT")],
    setuid: { create: ok("open"), chmod: no("chmod", "EPERM"), open: no("open", "EPERM") },
    block: { listed: [], scanned: 12, opens: [no("open", "ENOENT")], node: no("mknod", "EPERM") },
  };
}

function seenClean(): HostFsSeen {
  return {
    written: new Map([["x", file(false)]]),
    setuid: new Map([["x", { chmod: file(true), create: file(false) }]]),
    socketsAfter: [ok("host: connect"), ok("host: connect")],
  };
}

function verdicts(sc: HostFsScene, e: HostFsPhase1, seen: HostFsSeen): Record<string, string> {
  return Object.fromEntries(classifyHostFs({ s, token, e, scene: sc, seen }).map((o) => [o.probe, o.result]));
}

test("refusals with their proof read blocked", () => {
  assert.deepEqual(verdicts(scene(), refusedAll(), seenClean()), {
    "host-file-write": "blocked",
    "host-daemon-socket": "blocked",
    "setuid-file": "blocked",
    "block-device": "blocked",
  });
});

test("the same refusals without their proof read inconclusive", () => {
  const e = refusedAll();
  e.write = { ...no("open", "EROFS"), ino: 8 }; // another directory than the auditor's
  e.block = { ...e.block!, listed: ["/dev/vda"] }; // a disk listed, even if this open failed
  const seen = seenClean();
  seen.socketsAfter[1] = no("host: connect", "ECONNREFUSED"); // one listener died during the probes
  seen.setuid.set("x", { chmod: file(false), create: file(false) }); // its /tmp is not the host's
  assert.deepEqual(verdicts(scene(), e, seen), {
    "host-file-write": "inconclusive",
    "host-daemon-socket": "inconclusive",
    "setuid-file": "inconclusive",
    "block-device": "inconclusive",
  });
  // Controls that failed, and refusals for a reason that is no refusal.
  const bad = scene({
    dir: { path: "/var/lib/netctx-audit-t", ino: 7, control: no("host: create", "EROFS") },
    block: { path: "/dev/loop0", dev: [7, 0], control: no("host: open", "EPERM") },
  });
  const e2 = refusedAll();
  e2.sockets[0] = no("connect", "timed out");
  e2.setuid = { ...e2.setuid, chmod: no("chmod", "ENOENT") };
  assert.deepEqual(verdicts(bad, e2, seenClean()), {
    "host-file-write": "inconclusive",
    "host-daemon-socket": "inconclusive",
    "setuid-file": "inconclusive",
    "block-device": "inconclusive",
  });
});

test("what the host sees outweighs what the probe says", () => {
  const seen = seenClean();
  seen.written.set("x", file(true));
  seen.setuid.set("x", { chmod: file(true, true), create: file(false) });
  const sc = scene();
  sc.sockets[1]!.seen.push(token); // the /tmp one alone was reached
  const e = refusedAll();
  e.block = { ...e.block!, node: ok("mknod", "block device 7:0") };
  assert.deepEqual(verdicts(sc, e, seen), {
    "host-file-write": "possible",
    "host-daemon-socket": "possible",
    "setuid-file": "possible",
    "block-device": "possible",
  });
});

test("a probe is left out where the auditor could not make its target", () => {
  const { dir: _d, block: _b, ...bare } = scene();
  const got = verdicts({ ...bare, sockets: [] }, refusedAll(), { ...seenClean(), written: new Map() });
  assert.deepEqual(got, { "setuid-file": "blocked" });
});
