/** One interface-name check for the kernel layer and for user input: the kernel's rule, counted in bytes. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { checkIfname as checkKernelIfname } from "../../src/kernel/link.ts";
import { checkIfname } from "../../src/model/names.ts";
import { ifnameProblem } from "../../src/net/ifname.ts";

test("names the kernel takes: 1 to 15 bytes, no '/', ':', whitespace, '.' or '..'", () => {
  for (const ok of ["eth0", "a", "nc-abcdefghijkl", "x.y-z_1", "é".repeat(7)])
    assert.equal(ifnameProblem(ok), undefined, ok);
  for (const bad of ["", "nc-abcdefghijklm", "a/b", "a:b", "a b", "a\tb", ".", "..", "é".repeat(8)])
    assert.notEqual(ifnameProblem(bad), undefined, JSON.stringify(bad));
});

test("bytes, not characters: eight two-byte characters are 16 bytes, at every layer", () => {
  const name = "é".repeat(8);
  assert.equal(name.length, 8);
  assert.throws(() => checkKernelIfname(name, "peer.name"), /peer\.name: .*longer than 15 bytes \(16\)/);
  assert.throws(() => checkIfname("ifname", name), /ifname: .*longer than 15 bytes \(16\)/);
});

test("user input is held to a narrower alphabet than the kernel's", () => {
  checkKernelIfname("wg+vpn");
  assert.throws(() => checkIfname("ifname", "wg+vpn"), /ifname: "wg\+vpn" is not a valid interface name/);
});
