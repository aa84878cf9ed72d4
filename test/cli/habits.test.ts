/**
 * What users of podman and docker expect of the CLI (issue 17): a default driver and help that lists every driver
 * from the registry, `rm A B C` going on past a missing name, --state-dir after the subcommand.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { networkDriverNames, networkDriverOptionKeys } from "../../src/networks/registry.ts";
import { netctx, netctxJson, netctxOk, netctxState } from "../utils/cli.ts";
import { kernelSnapshot } from "../utils/kernel-oracle.ts";

interface NetView {
  name: string;
  driver: string;
  options: Record<string, unknown>;
}

test("network create --help lists every registered driver, bridge the default, and every driver's -o keys", () => {
  const help = netctxOk("network", "create", "--help");
  // The option's description as one line: commander wraps it to the terminal's width.
  const flat = help.replace(/\s+/g, " ");
  const driverLine = flat.slice(flat.indexOf("--driver"), flat.indexOf("--", flat.indexOf("--driver") + 2));
  assert.ok(networkDriverNames().length >= 4);
  for (const name of networkDriverNames()) assert.match(driverLine, new RegExp(`\\b${name}\\b`), driverLine);
  assert.match(driverLine, /\(default: "bridge"\)/);
  assert.ok(networkDriverOptionKeys().includes("macvlan: parent"));
  for (const keys of networkDriverOptionKeys()) assert.ok(flat.includes(keys), `help names ${keys}`);
});

test("--driver defaults to bridge; a declared -o key is taken", () => {
  netctxOk("network", "create", "dflt", "--subnet", "10.86.0.0/24");
  assert.equal(netctxJson<NetView>("network", "inspect", "dflt").driver, "bridge");
  netctxOk("network", "create", "mv", "--driver", "macvlan", "-o", "parent=lo", "--subnet", "10.87.0.0/24");
  assert.equal(netctxJson<NetView>("network", "inspect", "mv").options["parent"], "lo");
  netctxOk("network", "rm", "dflt", "mv");
});

test("network rm A B C goes on past a missing name and a network in use, reports each, exits 1", () => {
  for (const [i, n] of ["na", "nb", "nc"].entries())
    netctxOk("network", "create", n, "--driver", "host", "--subnet", `10.88.${i}.0/24`);
  netctxOk("create", "user", "--level", "socket", "--network", "nb");
  const before = kernelSnapshot();
  const r = netctx("network", "rm", "na", "ghost", "nb", "nc");
  assert.equal(r.code, 1, r.stderr);
  assert.deepEqual(r.stdout.trim().split("\n"), ["na", "nc"], "the others are removed");
  assert.deepEqual(r.stderr.trim().split("\n"), [
    'error: network "ghost" does not exist',
    'error: network: network "nb" is in use by "user"',
  ]);
  assert.deepEqual(
    netctxJson<NetView[]>("network", "ls").map((n) => n.name),
    ["nb"],
  );
  assert.notEqual(kernelSnapshot(), before, "na and nc are gone from the kernel");
  const ignored = netctx("network", "rm", "--ignore", "ghost");
  assert.equal(ignored.code, 0, ignored.stderr);
  assert.match(ignored.stderr, /^note: network "ghost" does not exist/);
  netctxOk("rm", "user");
  netctxOk("network", "rm", "nb");
});

test("rm A B C goes on past a missing name, removes the others, reports it and exits 1", () => {
  netctxOk("network", "create", "rmn", "--driver", "host", "--subnet", "10.89.0.0/24");
  netctxOk("create", "ca", "--level", "socket", "--network", "rmn");
  netctxOk("create", "cc", "--level", "l3", "--network", "rmn");
  const r = netctx("rm", "ca", "ghost", "cc");
  assert.equal(r.code, 1, r.stderr);
  assert.deepEqual(r.stdout.trim().split("\n"), ["ca", "cc"]);
  assert.equal(r.stderr.trim(), 'error: context "ghost" does not exist');
  assert.deepEqual(netctxJson<unknown[]>("ls"), []);
  const ignored = netctx("rm", "-i", "ghost");
  assert.equal(ignored.code, 0, ignored.stderr);
  assert.match(ignored.stderr, /^note: context "ghost" does not exist/);
  netctxOk("network", "rm", "rmn");
});

test("--state-dir is taken after the subcommand too, and names the store used", () => {
  const other = mkdtempSync(join(tmpdir(), "netctx-other-store-"));
  try {
    const mine = netctxState();
    netctxOk(
      "network",
      "create",
      "elsewhere",
      "--driver",
      "host",
      "--subnet",
      "10.91.0.0/24",
      "--state-dir",
      other,
    );
    netctxOk("create", "away", "--level", "socket", "--network", "elsewhere", "--state-dir", other);
    assert.equal(netctxState(), mine, "the test's own store is untouched");
    assert.deepEqual(
      netctxJson<NetView[]>("network", "ls", "--state-dir", other).map((n) => n.name),
      ["elsewhere"],
    );
    assert.deepEqual(
      netctxJson<{ name: string }[]>("ls", "--state-dir", other).map((c) => c.name),
      ["away"],
    );
    // before and after, the same directory: fine
    assert.equal(netctx("--state-dir", other, "ls", "--state-dir", other).code, 0);
    netctxOk("rm", "away", "--state-dir", other);
    netctxOk("network", "rm", "elsewhere", "--state-dir", other);
  } finally {
    rmSync(other, { recursive: true, force: true });
  }
});
