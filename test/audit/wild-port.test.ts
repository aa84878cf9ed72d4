/**
 * The audit's wildcard-port probe on its own: a socket context whose own programs are intact (foreign binds
 * refused) still measures "-" when the second context's listener holds the shared stack's wildcard, and the
 * evidence names that holder. The probe binds with SO_REUSEADDR, so this proves a listener still refuses it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { detachSocketPolicy } from "../../src/kernel/bpf/socket-policy.ts";
import { netctx, netctxOk } from "../utils/cli.ts";

interface AuditJson {
  contexts: {
    name: string;
    cells: Record<string, string>;
    escapes: { probe: string; result: string }[];
    evidence: Record<string, { command: string; result: string }[]>;
    ok: boolean;
  }[];
}

function audit(...names: string[]): AuditJson {
  const r = netctx("audit", ...names, "--json");
  assert.ok(r.stdout.trim().startsWith("{"), `no JSON: ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout) as AuditJson;
}

function wildEvidence(c: AuditJson["contexts"][number]): { command: string; result: string } {
  const e = c.evidence["sockets"]?.find((x) => x.command.includes("(the second context's port)"));
  assert.ok(e, `no wildcard-port evidence: ${JSON.stringify(c.evidence["sockets"])}`);
  return e;
}

test("a second context's un-narrowed wildcard listener makes the sockets cell '-'", () => {
  netctxOk("network", "create", "pool", "--driver", "host", "--subnet", "10.85.0.0/24");
  netctxOk("create", "s1", "--level", "socket", "--network", "pool");
  netctxOk("create", "s2", "--level", "socket", "--network", "pool");

  const healthy = audit("s1").contexts[0]!;
  assert.equal(healthy.cells["sockets"], "i");
  assert.match(wildEvidence(healthy).result, /^ok \(10\.85\.0\.\d+:\d+\)$/);

  // s2 loses its programs: its marker now listens on 0.0.0.0 of the shared stack.
  detachSocketPolicy(join(process.env.NETCTX_CGROUP_PARENT!, "s2"));
  const s1 = audit("s1").contexts[0]!;
  assert.equal(s1.name, "s1");
  assert.equal(s1.escapes.find((e) => e.probe === "foreign-bind")?.result, "blocked");
  const wild = wildEvidence(s1);
  assert.match(wild.command, /SO_REUSEADDR/);
  assert.match(wild.result, /^EADDRINUSE \(held here by .*0\.0\.0\.0:\d+ LISTEN/);
  assert.equal(s1.cells["sockets"], "-");
  assert.equal(s1.ok, false);
  netctxOk("rm", "s1", "s2");
});
