/**
 * The policy program (kernel/bpf/policy-program.ts) against model/policy-tables.ts's rule, packet by packet: the tc
 * variant run with BPF_PROG_TEST_RUN on frames made here, over maps written by writeTables (networks/policy-maps.ts).
 * The corners the wire tests (test/policy/datapath.test.ts) do not reach: ND, fragments, DHCP, ICMP echo identifiers,
 * the families kept apart in the trie, generations written in turn, non-IP frames.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { loadProgram } from "../../src/kernel/bpf/attach.ts";
import { mapEntries } from "../../src/kernel/bpf/maps.ts";
import {
  ADDRESS_KEY_SIZE,
  addressLayout,
  PORT_KEY_SIZE,
  type PolicyMapFds,
  policyProgram,
} from "../../src/kernel/bpf/policy-program.ts";
import { closeFd } from "../../src/kernel/bpf/syscall.ts";
import { testRunProgram } from "../../src/kernel/bpf/test-run.ts";
import { addressEntry, OPEN_TABLES, POLICY_WORDS, type PolicyTables } from "../../src/model/policy-tables.ts";
import { ipBytes, parseIp } from "../../src/net/cidr.ts";
import {
  createPolicyMaps,
  generationEntries,
  hex,
  newWriteCache,
  writeTables,
} from "../../src/networks/policy-maps.ts";

const PASS = -1; // TCX_NEXT
const DROP = 2;

const entry = addressEntry;

const ip = (text: string) => ipBytes(parseIp(text, "ip"));

interface Frame {
  src: string;
  dst: string;
  proto: "tcp" | "udp" | "icmp";
  sport?: number;
  dport?: number;
  /** ICMP / ICMPv6 type, and the echo identifier. */
  type?: number;
  id?: number;
  /** IPv4 fragment offset (8-byte units). */
  fragment?: number;
}

/** An Ethernet frame with an IPv4 or IPv6 header and 8 bytes of transport header. */
function frame(f: Frame): Uint8Array {
  const v6 = f.src.includes(":");
  const ipLen = v6 ? 40 : 20;
  const p = new Uint8Array(14 + ipLen + 20);
  const view = new DataView(p.buffer);
  view.setUint16(12, v6 ? 0x86dd : 0x0800);
  const proto = f.proto === "tcp" ? 6 : f.proto === "udp" ? 17 : v6 ? 58 : 1;
  if (v6) {
    p[14] = 0x60;
    view.setUint16(18, 20);
    p[20] = proto;
    p[21] = 64;
    p.set(ip(f.src), 22);
    p.set(ip(f.dst), 38);
  } else {
    p[14] = 0x45;
    view.setUint16(16, ipLen + 20);
    view.setUint16(20, 0x4000 | (f.fragment ?? 0));
    p[22] = 64;
    p[23] = proto;
    p.set(ip(f.src), 26);
    p.set(ip(f.dst), 30);
  }
  const l4 = 14 + ipLen;
  if (f.proto === "icmp") {
    p[l4] = f.type ?? (v6 ? 128 : 8);
    view.setUint16(l4 + 4, f.id ?? 0);
  } else {
    view.setUint16(l4, f.sport ?? 40000);
    view.setUint16(l4 + 2, f.dport ?? 80);
  }
  return p;
}

describe("policy program", () => {
  let maps: PolicyMapFds;
  let prog: number;
  const run = (f: Frame | Uint8Array) => testRunProgram(prog, f instanceof Uint8Array ? f : frame(f)).retval;
  const verdict = (f: Frame) => {
    const r = run(f);
    return r === PASS ? "pass" : r === DROP ? "drop" : `returned ${r}`;
  };

  before(() => {
    maps = createPolicyMaps();
    prog = loadProgram(policyProgram(maps, "tcx-ingress", POLICY_WORDS));
  });

  after(() => {
    closeFd(prog);
    for (const fd of Object.values(maps)) closeFd(fd);
  });

  test("open tables: everything passes after the first lookup; non-IP frames always pass", () => {
    writeTables(maps, OPEN_TABLES);
    assert.equal(verdict({ src: "10.0.0.1", dst: "10.0.0.2", proto: "udp" }), "pass");
    writeTables(maps, {
      addresses: [entry("10.0.0.2/32", { ingressSelected: true })],
      ports: [],
      anyPort: 0n,
    });
    assert.equal(verdict({ src: "10.0.0.1", dst: "10.0.0.2", proto: "udp" }), "drop");
    const arp = frame({ src: "10.0.0.1", dst: "10.0.0.2", proto: "udp" });
    new DataView(arp.buffer).setUint16(12, 0x0806);
    assert.equal(run(arp), PASS);
  });

  test("ports: one TCP port of a policy opens it and no other, nor UDP; anyPort opens every port and ICMP", () => {
    const tables: PolicyTables = {
      addresses: [
        entry("10.0.0.1/32", { ingressFrom: 1n }),
        entry("10.0.0.2/32", { ingressTo: 1n, ingressSelected: true }),
      ],
      ports: [{ proto: "tcp", port: 80, bits: 1n }],
      anyPort: 0n,
    };
    writeTables(maps, tables);
    const to = (proto: Frame["proto"], dport?: number) =>
      verdict({ src: "10.0.0.1", dst: "10.0.0.2", proto, dport: dport ?? 80, sport: 41000 + (dport ?? 0) });
    assert.deepEqual(
      [to("tcp", 80), to("tcp", 81), to("udp", 80), to("icmp")],
      ["pass", "drop", "drop", "drop"],
    );
    // A non-first fragment has no ports: only anyPort decides it.
    assert.equal(verdict({ src: "10.0.0.1", dst: "10.0.0.2", proto: "tcp", fragment: 100 }), "drop");
    writeTables(maps, { ...tables, ports: [], anyPort: 1n });
    assert.deepEqual([to("tcp", 81), to("udp", 80), to("icmp")], ["pass", "pass", "pass"]);
    assert.equal(verdict({ src: "10.0.0.1", dst: "10.0.0.2", proto: "tcp", fragment: 100 }), "pass");
  });

  test("ICMP echo: the reply to an allowed request passes, a request of the other side does not", () => {
    writeTables(maps, {
      addresses: [entry("10.0.1.1/32", { ingressSelected: true })],
      ports: [],
      anyPort: 0n,
    });
    assert.equal(verdict({ src: "10.0.1.1", dst: "10.0.1.2", proto: "icmp", type: 8, id: 7 }), "pass");
    assert.equal(verdict({ src: "10.0.1.2", dst: "10.0.1.1", proto: "icmp", type: 0, id: 7 }), "pass");
    assert.equal(verdict({ src: "10.0.1.2", dst: "10.0.1.1", proto: "icmp", type: 8, id: 9 }), "drop");
    assert.equal(verdict({ src: "10.0.1.2", dst: "10.0.1.1", proto: "icmp", type: 0, id: 9 }), "drop");
  });

  test("IPv6: Neighbour Discovery passes to a context that accepts nothing; an echo request does not", () => {
    writeTables(maps, {
      addresses: [entry("fd00::2/128", { ingressSelected: true })],
      ports: [],
      anyPort: 0n,
    });
    for (const type of [133, 134, 135, 136, 137])
      assert.equal(verdict({ src: "fd00::1", dst: "fd00::2", proto: "icmp", type }), "pass", `type ${type}`);
    assert.equal(verdict({ src: "fd00::1", dst: "fd00::2", proto: "icmp", type: 128, id: 3 }), "drop");
    assert.equal(verdict({ src: "fd00::1", dst: "fd00::2", proto: "tcp", sport: 42000 }), "drop");
  });

  test("a gateway keeps DNS (UDP and TCP 53) and DHCP (UDP 67, 547) open, nothing else", () => {
    writeTables(maps, {
      addresses: [
        entry("10.0.2.5/32", { egressSelected: true }),
        entry("fd02::5/128", { egressSelected: true }),
        entry("10.0.2.1/32", { gateway: true }),
        entry("fd02::1/128", { gateway: true }),
      ],
      ports: [],
      anyPort: 0n,
    });
    const to = (dst: string, proto: Frame["proto"], dport: number) =>
      verdict({ src: dst.includes(":") ? "fd02::5" : "10.0.2.5", dst, proto, dport, sport: 43000 + dport });
    assert.deepEqual(
      [
        to("10.0.2.1", "udp", 53),
        to("10.0.2.1", "tcp", 53),
        to("10.0.2.1", "udp", 67),
        to("fd02::1", "udp", 547),
      ],
      ["pass", "pass", "pass", "pass"],
    );
    assert.deepEqual(
      [to("10.0.2.1", "tcp", 67), to("10.0.2.1", "udp", 68), to("10.0.2.9", "udp", 53)],
      ["drop", "drop", "drop"],
    );
  });

  test("the families stay apart: ::/0 is not the IPv4 world; a context talking to itself passes", () => {
    writeTables(maps, {
      addresses: [
        entry("::/0", { ingressFrom: 1n }),
        entry("10.0.3.2/32", { ingressTo: 1n, ingressSelected: true }),
      ],
      ports: [],
      anyPort: 1n,
    });
    assert.equal(verdict({ src: "10.0.3.9", dst: "10.0.3.2", proto: "udp", sport: 44001 }), "drop");
    assert.equal(verdict({ src: "10.0.3.2", dst: "10.0.3.2", proto: "udp", sport: 44002 }), "pass");
    writeTables(maps, {
      addresses: [
        entry("0.0.0.0/0", { ingressFrom: 1n }),
        entry("10.0.3.2/32", { ingressTo: 1n, ingressSelected: true }),
      ],
      ports: [],
      anyPort: 1n,
    });
    assert.equal(verdict({ src: "10.0.3.9", dst: "10.0.3.2", proto: "udp", sport: 44003 }), "pass");
  });

  test("isolate group: members drop each other, whatever policies allow", () => {
    writeTables(maps, {
      addresses: [entry("10.0.4.1/32", { isolateGroup: 5 }), entry("10.0.4.2/32", { isolateGroup: 5 })],
      ports: [],
      anyPort: 0n,
    });
    assert.equal(verdict({ src: "10.0.4.1", dst: "10.0.4.2", proto: "udp", sport: 45001 }), "drop");
    assert.equal(verdict({ src: "10.0.4.1", dst: "10.0.4.3", proto: "udp", sport: 45002 }), "pass");
  });

  test("generations: each write brings the inactive one to its tables and takes out what they dropped", () => {
    const generation = (key: Uint8Array) => key[4]!;
    const held = () => {
      const count = [0, 0, 0];
      for (const [k] of mapEntries(maps.addresses, ADDRESS_KEY_SIZE, addressLayout(POLICY_WORDS).size))
        count[generation(k)]! += 1;
      return count;
    };
    const many = (n: number): PolicyTables => ({
      addresses: Array.from({ length: n }, (_, i) => entry(`10.9.${i}.0/24`, { ingressSelected: true })),
      ports: [],
      anyPort: 0n,
    });
    writeTables(maps, many(5));
    writeTables(maps, many(3));
    writeTables(maps, many(1));
    // Each generation holds one table (plus its two zero entries at prefix 0): the last write's, and the one before.
    const [, one, two] = held();
    assert.deepEqual([one, two].sort(), [1 + 2, 3 + 2].sort());
    assert.equal(verdict({ src: "10.0.5.1", dst: "10.9.0.7", proto: "udp", sport: 46001 }), "drop");
    assert.equal(verdict({ src: "10.0.5.1", dst: "10.9.2.7", proto: "udp", sport: 46002 }), "pass");
  });
});

describe("policy maps: writers in two processes", () => {
  test("a writer whose record of the maps is stale (another wrote since) reads them back: its generation holds exactly its tables", () => {
    const maps = createPolicyMaps();
    try {
      const one = newWriteCache();
      const other = newWriteCache();
      const tables = (cidr: string) => ({
        addresses: [entry(cidr, { ingressSelected: true })],
        ports: [{ proto: "tcp" as const, port: Number(cidr.split(".")[3]!.split("/")[0]) + 1000, bits: 1n }],
        anyPort: 0n,
      });
      writeTables(maps, tables("10.0.0.1/32"), one); // generation 1
      writeTables(maps, tables("10.0.0.2/32"), one); // generation 2
      writeTables(maps, tables("10.0.0.3/32"), other); // generation 1, read back first
      writeTables(maps, tables("10.0.0.4/32"), other); // generation 2
      writeTables(maps, tables("10.0.0.5/32"), one); // generation 1: `one` last saw 10.0.0.1 there
      const want = generationEntries(tables("10.0.0.5/32"), 1);
      const addressValue = addressLayout(POLICY_WORDS).size;
      const held = mapEntries(maps.addresses, ADDRESS_KEY_SIZE, addressValue).filter(([k]) => k[4] === 1);
      assert.deepEqual(new Set(held.map(([k]) => hex(k))), new Set(want.addresses.keys()));
      const ports = mapEntries(maps.ports, PORT_KEY_SIZE, POLICY_WORDS * 8).filter(([k]) => k[0] === 1);
      assert.deepEqual(new Set(ports.map(([k]) => hex(k))), new Set(want.ports.keys()));
    } finally {
      for (const fd of Object.values(maps)) closeFd(fd);
    }
  });
});
