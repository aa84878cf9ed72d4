import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { enterArgv } from "../../src/exec/enter.ts";
import { attachSocketPolicy, detachSocketPolicy } from "../../src/kernel/bpf/socket-policy.ts";
import { cgroup2Root, contextsCgroupParent, createCgroup, removeCgroup } from "../../src/kernel/cgroup.ts";
import { BASE_CAPABILITIES } from "../../src/levels/driver.ts";
import { bareView } from "../utils/cli.ts";
import { testConfig } from "../utils/config.ts";
import { probe, probeArgv, startProbe } from "../utils/socket-probe.ts";
import { A4, A6, setUpHostBridge } from "./host-bridge.ts";

let cg = "";

/** The shared-stack levels' sandbox around a bare cgroup. */
function confinedArgv(cgroup: string, command: string[]): string[] {
  const box = {
    cgroup,
    keepCaps: BASE_CAPABILITIES,
    families: ["unix", "inet", "inet6", "netlink"] as const,
  };
  return enterArgv({ ...box, scopeAbstractUnix: true }, bareView(), command);
}

function run(argv: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("the shared-stack exec sandbox (netctx-enter)", () => {
  before(() => {
    setUpHostBridge();
    cg = join(contextsCgroupParent(testConfig().cgroupParent), "confined");
    createCgroup(cg);
    attachSocketPolicy(cg, { ipv4: A4, ipv6: A6 });
  });

  after(() => {
    detachSocketPolicy(cg);
    removeCgroup(cg);
  });

  test("root inside cannot add routes, move itself out, and sees its cgroup as the namespace root", () => {
    const parentProcs = join(contextsCgroupParent(testConfig().cgroupParent), "cgroup.procs");
    const rootProcs = join(cgroup2Root(), "cgroup.procs");
    const script = [
      "id -u",
      "ip route add 10.98.0.0/24 dev lo 2>/dev/null && echo route=ok || echo route=refused",
      `(echo $$ > ${rootProcs}) 2>/dev/null && echo root-procs=ok || echo root-procs=refused`,
      `(echo $$ > ${parentProcs}) 2>/dev/null && echo parent-procs=ok || echo parent-procs=refused`,
      "mount -t cgroup2 none /mnt 2>/dev/null && echo mount=ok || echo mount=refused",
      "grep '^0::' /proc/self/cgroup",
    ].join("\n");
    const r = run(confinedArgv(cg, ["sh", "-c", script]));
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), [
      "0",
      "route=refused",
      "root-procs=refused",
      "parent-procs=refused",
      "mount=refused",
      "0::/",
    ]);
    // The same commands outside the confinement succeed, so the refusals above are the confinement's doing.
    const control = run(["sh", "-c", "ip route add 10.98.0.0/24 dev lo && ip route del 10.98.0.0/24 dev lo"]);
    assert.equal(control.status, 0, control.stderr);
  });

  test("sockets inside: raw and packet refused, wildcard bind narrowed to the context's address", async () => {
    const p = startProbe(
      confinedArgv(
        cg,
        probeArgv([{ op: "raw" }, { op: "packet" }, { op: "bind", host: "0.0.0.0" }, { op: "cgroup" }]),
      ),
    );
    const raw = await p.next();
    const packet = await p.next();
    const bind = await p.next();
    const cgroup = await p.next();
    await p.stop();
    assert.equal(raw.ok, false);
    assert.equal(packet.ok, false);
    assert.equal(packet.code, "EPERM");
    assert.equal(bind.address, A4);
    assert.match(String(cgroup.value), /^0::\/$/m);
    // Control: a packet socket outside the confinement works.
    const [outside] = await probe(undefined, [{ op: "packet" }]);
    assert.equal(outside!.ok, true);
  });
});
