/** One address codec (net/cidr.ts): the kernel layer parses and prints addresses through it, so they agree. */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  formatIp as kernelFormatIp,
  parseCidr as kernelParseCidr,
  parseIp as kernelParseIp,
} from "../../src/kernel/netlink.ts";
import { formatIp, ipBytes, parseIp } from "../../src/net/cidr.ts";

test("the kernel codec refuses what the model refuses: leading zeros, zones, junk", () => {
  for (const bad of ["010.1.0.1", "10.1.0.01", "fe80::1%eth0", "1.2.3", "::1::2", "10.1.0.256", ""]) {
    assert.throws(() => parseIp(bad, "ip"), /ip: /, `model: ${bad}`);
    assert.throws(() => kernelParseIp(bad, "gateway"), /gateway: /, `kernel: ${bad}`);
  }
  assert.throws(() => kernelParseCidr("10.1.0.0/33", "dst"), /dst: .*prefix/);
  assert.throws(() => kernelParseCidr("10.1.0.0/", "dst"), /dst: /);
});

test("bytes and text round-trip the same way through both", () => {
  for (const text of [
    "10.1.0.5",
    "0.0.0.0",
    "fd00::1",
    "::",
    "::ffff:10.1.2.3",
    "2001:db8::1:0:0:1",
    "1:0:0:1:0:0:0:1",
  ]) {
    const ip = parseIp(text, "ip");
    const { bytes, family } = kernelParseIp(text);
    assert.equal(family, ip.family);
    assert.deepEqual([...bytes], [...ipBytes(ip)]);
    assert.equal(kernelFormatIp(bytes, 0, bytes.length), formatIp(ip.family, ip.addr), text);
  }
  // RFC 5952: the first of two equal zero runs is the one compressed, uppercase hex printed lowercase.
  assert.equal(formatIp(6, parseIp("1:0:0:1:0:0:1:1", "ip").addr), "1::1:0:0:1:1");
  assert.equal(parseIp("FD00::A", "ip").text, "fd00::a");
  assert.deepEqual(kernelParseCidr("10.1.0.5"), {
    family: 4,
    bytes: Buffer.from([10, 1, 0, 5]),
    prefix: 32,
    address: "10.1.0.5",
  });
});
