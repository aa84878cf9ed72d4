import assert from "node:assert/strict";
import { test } from "node:test";
import { NetctxError } from "../../src/errors.ts";
import {
  formatIp,
  MessageWriter,
  parseAttrs,
  parseCidr,
  parseIp,
  parseMac,
} from "../../src/kernel/netlink.ts";

test("IP text round-trips through bytes the way iproute2 prints it (RFC 5952)", () => {
  for (const [input, printed] of [
    ["10.1.0.2", "10.1.0.2"],
    ["fd00::2", "fd00::2"],
    ["::", "::"],
    ["::1", "::1"],
    ["fd00:0:0:1::", "fd00:0:0:1::"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:DB8::A", "2001:db8::a"],
    ["fe80::1:2:3:4:5:6", "fe80:0:1:2:3:4:5:6"],
    ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
    ["::ffff:0:1", "::ffff:0.0.0.1"],
  ] as const) {
    const ip = parseIp(input);
    assert.equal(formatIp(ip.bytes, 0, ip.bytes.length), printed, input);
  }
  assert.deepEqual(parseCidr("fd00::/64").prefix, 64);
  assert.equal(parseCidr("10.0.0.1").prefix, 32);
  for (const bad of ["10.0.0.1/", "10.0.0.1/33", "fd00::/129", "nope", "10.0.0.256/8"])
    assert.throws(
      () => parseCidr(bad),
      (err: unknown) => err instanceof NetctxError && err.code === "invalid",
      bad,
    );
  assert.throws(() => parseMac("02:00:00:00:00"), NetctxError);
});

test("attributes are aligned to 4 bytes, nested lengths cover their children", () => {
  const w = new MessageWriter(16);
  w.begin(16, 0x5);
  w.u32(0xdeadbeef);
  w.attrStr(3, "abcde");
  const nest = w.nestStart(18);
  w.attrU8(1, 7);
  w.attrBe16(15, 4789);
  w.nestEnd(nest);
  w.attrU32(4, 1500);
  const len = w.finish(42);
  assert.equal(len, w.pos);
  assert.equal(len % 4, 0);
  assert.equal(w.buf.readUInt32LE(0), len);
  assert.equal(w.buf.readUInt32LE(8), 42);
  const a = parseAttrs(w.buf, 20, len, 20);
  assert.equal(a.str(3), "abcde");
  assert.equal(a.len(3), 6, "NUL-terminated");
  assert.equal(a.u32(4), 1500);
  const inner = a.nested(18, 20);
  assert.equal(inner?.u8(1), 7);
  assert.equal(inner?.be16(15), 4789);
  assert.equal(a.len(18), 16, "two 8-byte padded children");
});
