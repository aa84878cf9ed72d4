import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { NetctxError } from "../../src/errors.ts";
import {
  cidrContains,
  cidrsOverlap,
  formatIp,
  hostAt,
  isValidMac,
  lastAddress,
  macProblem,
  parseCidr,
  parseInterfaceAddress,
  parseIp,
  parseSubnet,
} from "../../src/net/cidr.ts";
import { type IpAddr, ipj } from "../utils/kernel-oracle.ts";

function rejects(fn: () => unknown, field: string, message?: string | RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof NetctxError, `threw ${String(err)}`);
    assert.equal(err.code, "invalid");
    assert.equal(err.field, field);
    assert.ok(err.message.startsWith(`${field}: `), err.message);
    assert.ok(!err.message.includes("\n"));
    if (typeof message === "string") assert.equal(err.message, message);
    else if (message) assert.match(err.message, message);
    return true;
  });
}

test("IPv4 addresses parse to bigints and print back canonically", () => {
  assert.deepEqual(parseIp("10.1.0.5", "ip"), { family: 4, addr: 0x0a010005n, text: "10.1.0.5" });
  assert.deepEqual(parseIp("255.255.255.255", "ip").addr, 0xffffffffn);
  assert.equal(parseIp("0.0.0.0", "ip").addr, 0n);
});

test("bad IPv4 input is refused naming the field", () => {
  for (const bad of [
    "10.1.0.256",
    "10.1.0",
    "10.1.0.0.1",
    "010.1.0.1",
    "10.1.0.1 ",
    " 10.1.0.1",
    "a.b.c.d",
    "1..2.3",
    "-1.0.0.0",
    "1e2.0.0.0",
  ])
    rejects(() => parseIp(bad, "ip"), "ip", /is not an IP address/);
  rejects(() => parseIp("", "gateway"), "gateway", "gateway: an IP address is required");
  rejects(() => parseIp("10.1.0.256", "ips[1]"), "ips[1]", 'ips[1]: "10.1.0.256" is not an IP address');
});

test("IPv6 addresses parse and print per RFC 5952", () => {
  const cases: [string, string][] = [
    ["FD00:0:0:0:0:0:0:1", "fd00::1"],
    ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // equal runs: the first is compressed
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"], // the longest run wins
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // a single zero group is not compressed
    ["::", "::"],
    ["::1", "::1"],
    ["1::", "1::"],
    ["fe80::", "fe80::"],
    ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
    ["::ffff:c000:0201", "::ffff:192.0.2.1"],
    ["64:ff9b::192.0.2.33", "64:ff9b::c000:221"],
    ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
    ["ABCD:EF01::", "abcd:ef01::"],
  ];
  for (const [input, canonical] of cases) {
    const ip = parseIp(input, "ip");
    assert.equal(ip.family, 6, input);
    assert.equal(ip.text, canonical, input);
    assert.equal(formatIp(6, ip.addr), canonical);
  }
  assert.equal(parseIp("::1", "ip").addr, 1n);
  assert.equal(parseIp("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ip").addr, (1n << 128n) - 1n);
});

test("bad IPv6 input is refused naming the field", () => {
  for (const bad of [
    "1::2::3",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7::8", // "::" standing for no group at all
    "fe80::1%eth0",
    "12345::",
    "::g",
    "1.2.3.4::",
    "::1.2.3",
    ":1::",
    "1:::2",
  ])
    rejects(() => parseIp(bad, "ip"), "ip", /is not an IPv6 address/);
});

test("formatIp agrees with the kernel's and iproute2's view of random IPv6 addresses", () => {
  // Addresses with zero runs of various lengths and places, added to lo in this test's throwaway namespace.
  const groups = [0, 0, 0, 0, 1, 0xabc, 0xffff];
  const mine: string[] = [];
  for (let i = 0; i < 120; i++) {
    let addr = 0n;
    for (let g = 0; g < 8; g++)
      addr = (addr << 16n) | BigInt(groups[Math.floor(Math.random() * groups.length)]!);
    addr = (addr & ~(0xffffn << 112n)) | (0xfd00n << 112n); // keep it a ULA, and off glibc's "::a.b.c.d" special case
    mine.push(formatIp(6, addr));
  }
  const unique = [...new Set(mine)];
  const batch = unique.map((a) => `address add ${a}/128 dev lo nodad`).join("\n");
  execFileSync("ip", ["-6", "-batch", "-"], { input: batch });
  const shown = ipj<IpAddr>(["-6", "addr", "show", "dev", "lo"]);
  const kernel = new Set(shown[0]!.addr_info.map((a) => a.local));
  for (const a of unique) assert.ok(kernel.has(a), `kernel prints ${a} differently`);
  // And what the kernel prints parses back to the same text.
  for (const k of kernel) assert.equal(parseIp(k, "ip").text, k);
});

test("CIDRs: prefixes, host bits, canonical text", () => {
  const c = parseCidr("10.1.0.5/24", "route");
  assert.deepEqual(c, {
    family: 4,
    addr: 0x0a010005n,
    prefix: 24,
    network: 0x0a010000n,
    text: "10.1.0.5/24",
  });
  assert.equal(parseSubnet("10.1.0.0/24", "subnet").text, "10.1.0.0/24");
  assert.equal(parseSubnet("FD00:1:0::/64", "subnet").text, "fd00:1::/64");
  assert.equal(parseSubnet("0.0.0.0/0", "subnet").network, 0n);
  assert.equal(parseSubnet("10.1.0.7/32", "subnet").prefix, 32);
  rejects(
    () => parseSubnet("10.1.0.5/24", "subnet"),
    "subnet",
    "subnet: 10.1.0.5/24 has host bits set (did you mean 10.1.0.0/24?)",
  );
  rejects(
    () => parseSubnet("fd00:1::1/64", "subnets[1]"),
    "subnets[1]",
    "subnets[1]: fd00:1::1/64 has host bits set (did you mean fd00:1::/64?)",
  );
  const ifa = parseInterfaceAddress("fd00:1::5/64", "address");
  assert.equal(ifa.text, "fd00:1::5/64");
  assert.equal(ifa.network, parseIp("fd00:1::", "x").addr);
  for (const bad of [
    "10.0.0.0/33",
    "fd00::/129",
    "10.0.0.0/",
    "10.0.0.0/a",
    "10.0.0.0/024",
    "10.0.0.0/-1",
    "10.0.0.0/ 8",
  ])
    rejects(() => parseCidr(bad, "subnet"), "subnet", /invalid prefix length/);
  for (const bad of ["10.0.0.0", "10.0.0.0/24/1", "/24"])
    rejects(() => parseSubnet(bad, "subnet"), "subnet", /is not a CIDR|is not an IP address|required/);
  rejects(() => parseSubnet("10.0.0.300/24", "subnet"), "subnet", /"10\.0\.0\.300" is not an IP address/);
});

test("containment, overlap, hostAt and lastAddress", () => {
  const net16 = parseSubnet("10.1.0.0/16", "s");
  const net24 = parseSubnet("10.1.2.0/24", "s");
  const other = parseSubnet("10.1.3.0/24", "s");
  const v6 = parseSubnet("fd00:1::/64", "s");
  assert.ok(cidrsOverlap(net16, net24) && cidrsOverlap(net24, net16));
  assert.ok(!cidrsOverlap(net24, other));
  assert.ok(cidrsOverlap(parseSubnet("0.0.0.0/0", "s"), other));
  assert.ok(!cidrsOverlap(net16, v6), "v4 and v6 never overlap");
  assert.ok(!cidrsOverlap(parseSubnet("::/0", "s"), net16));
  assert.ok(cidrsOverlap(parseSubnet("fd00::/16", "s"), v6));
  assert.ok(cidrContains(net24, 4, parseIp("10.1.2.255", "ip").addr));
  assert.ok(!cidrContains(net24, 4, parseIp("10.1.3.0", "ip").addr));
  assert.ok(!cidrContains(net24, 6, parseIp("10.1.2.1", "ip").addr), "family must match");
  assert.equal(formatIp(4, hostAt(net24, 1n)), "10.1.2.1");
  assert.equal(formatIp(4, lastAddress(net24)), "10.1.2.255");
  assert.equal(formatIp(6, lastAddress(v6)), "fd00:1::ffff:ffff:ffff:ffff");
  assert.equal(formatIp(6, hostAt(v6, 0x10000n)), "fd00:1::1:0");
  assert.equal(formatIp(4, lastAddress(parseSubnet("10.1.2.3/32", "s"))), "10.1.2.3");
});

test("formatIp refuses values that do not fit the family", () => {
  assert.throws(() => formatIp(4, 1n << 32n), NetctxError);
  assert.throws(() => formatIp(6, -1n), NetctxError);
});

test("MAC addresses: unicast colon form only", () => {
  assert.ok(isValidMac("02:42:ac:11:00:02"));
  assert.ok(isValidMac("02:42:AC:11:00:02"));
  for (const bad of [
    "02:42:ac:11:00",
    "02-42-ac-11-00-02",
    "0242.ac11.0002",
    "02:42:ac:11:00:0g",
    "",
    "02:42:ac:11:00:02:03",
  ])
    assert.ok(!isValidMac(bad), bad);
  assert.ok(!isValidMac("01:00:5e:00:00:01"));
  assert.match(macProblem("01:00:5e:00:00:01") ?? "", /multicast/);
  assert.ok(!isValidMac("00:00:00:00:00:00"));
});
