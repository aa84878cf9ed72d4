/**
 * The DNS server's rules without a kernel: the name tables (names, aliases, NAME.NETWORK.DOMAIN, PTR, the
 * per-network view, in-place updates), the answers to bad input, the forwarder's cache and the feed's diff.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { decode, encode, type RecordType } from "dns-packet";
import { AnswerCache } from "../../src/dns/cache.ts";
import { type DnsSnapshot, snapshotChanges } from "../../src/dns/feed.ts";
import { RCODE, respond, reverseAddress } from "../../src/dns/query.ts";
import { resolveName } from "../../src/dns/resolution.ts";
import { NameTables } from "../../src/dns/tables.ts";
import { queryBytes } from "../utils/dns-client.ts";

function scene(): NameTables {
  const t = new NameTables("netctx");
  t.apply({
    kind: "network",
    network: { name: "front", subnets: ["10.1.0.0/24", "fd01::/64"], listen: ["10.1.0.1", "fd01::1"] },
  });
  t.apply({ kind: "network", network: { name: "back", subnets: ["10.2.0.0/24"], listen: ["10.2.0.1"] } });
  t.apply({
    kind: "context",
    context: {
      name: "web",
      aliases: ["www"],
      attachments: [{ network: "front", addresses: ["10.1.0.2", "fd01::2"] }],
    },
  });
  t.apply({
    kind: "context",
    context: {
      name: "app",
      aliases: [],
      attachments: [
        { network: "front", addresses: ["10.1.0.3"] },
        { network: "back", addresses: ["10.2.0.3"] },
      ],
    },
  });
  t.apply({
    kind: "context",
    context: { name: "db", aliases: ["Store"], attachments: [{ network: "back", addresses: ["10.2.0.4"] }] },
  });
  return t;
}

/** The decoded answer `tables` gives `source` for NAME/TYPE over UDP (throws when it is not a reply). */
function ask(t: NameTables, source: string, name: string, type: "A" | "AAAA" | "PTR" | "MX" = "A") {
  const out = respond(t, queryBytes(name, { type }), source, "udp");
  assert.equal(out.kind, "reply", `${name} from ${source}: ${JSON.stringify(out)}`);
  return decode((out as { bytes: Buffer }).bytes);
}
/** dns-packet decodes the RCODE as a name; its types leave it out. */
const rcode = (p: ReturnType<typeof decode>) => (p as { rcode?: string }).rcode;
const data = (p: ReturnType<typeof decode>) =>
  (p.answers ?? []).map((a) => String((a as { data: unknown }).data)).sort();

test("a context answers by name, alias and NAME.NETWORK.DOMAIN, in any case, A and AAAA apart", () => {
  const t = scene();
  assert.deepEqual(data(ask(t, "10.1.0.3", "web")), ["10.1.0.2"]);
  assert.deepEqual(data(ask(t, "10.1.0.3", "WWW.")), ["10.1.0.2"]);
  assert.deepEqual(data(ask(t, "10.1.0.3", "www", "AAAA")), ["fd01::2"]);
  assert.deepEqual(data(ask(t, "10.1.0.3", "web.front.netctx")), ["10.1.0.2"]);
  const mx = ask(t, "10.1.0.3", "web", "MX");
  assert.equal(rcode(mx), "NOERROR", "a name with no record of the type: NODATA, not NXDOMAIN");
  assert.deepEqual(mx.answers, []);
  assert.ok(mx.flag_aa, "our names are answered with authority");
});

test("the per-network view: a context sees the names of the networks it is on, and nothing else", () => {
  const t = scene();
  // web is only on front: db (back) does not exist for it, and neither does db's alias.
  assert.equal(rcode(ask(t, "10.1.0.2", "db")), "NXDOMAIN");
  assert.equal(rcode(ask(t, "10.1.0.2", "store")), "NXDOMAIN");
  assert.equal(rcode(ask(t, "10.1.0.2", "db.back.netctx")), "NXDOMAIN");
  // app is on both, and asks through either gateway: it sees db, and web's address on the network they share.
  assert.deepEqual(data(ask(t, "10.1.0.3", "db")), ["10.2.0.4"]);
  assert.deepEqual(data(ask(t, "10.2.0.4", "app")), ["10.2.0.3"], "db shares only back with app");
  assert.deepEqual(data(ask(t, "10.1.0.2", "app")), ["10.1.0.3"]);
  assert.deepEqual(
    data(ask(t, "10.1.0.2", "app.back.netctx")),
    [],
    "NAME.NETWORK of a network web is not on",
  );
  assert.equal(rcode(ask(t, "10.1.0.2", "app.back.netctx")), "NXDOMAIN");
  // Another sender inside a subnet (the host on the gateway) sees that network.
  assert.deepEqual(data(ask(t, "10.2.0.1", "db")), ["10.2.0.4"]);
  assert.equal(rcode(ask(t, "10.2.0.1", "web")), "NXDOMAIN");
});

test("a sender outside every served subnet gets nothing, whatever it asks", () => {
  const t = scene();
  for (const name of ["web", "example.com", "2.0.1.10.in-addr.arpa"]) {
    const out = respond(t, queryBytes(name), "192.0.2.7", "udp");
    assert.equal(out.kind, "drop");
  }
  assert.equal(respond(t, Buffer.from("garbage!garbage!"), "192.0.2.7", "udp").kind, "drop");
});

test("PTR: a context's address gives NAME.NETWORK.DOMAIN to those who share the network, NXDOMAIN to others", () => {
  const t = scene();
  assert.deepEqual(data(ask(t, "10.1.0.3", "2.0.1.10.in-addr.arpa", "PTR")), ["web.front.netctx"]);
  const v6 = `${[..."fd010000000000000000000000000002"].reverse().join(".")}.ip6.arpa`;
  assert.equal(reverseAddress(v6), "fd01:0000:0000:0000:0000:0000:0000:0002");
  assert.deepEqual(data(ask(t, "10.1.0.3", v6, "PTR")), ["web.front.netctx"]);
  assert.equal(rcode(ask(t, "10.2.0.4", "2.0.1.10.in-addr.arpa", "PTR")), "NXDOMAIN");
  assert.equal(
    rcode(ask(t, "10.1.0.3", "99.0.1.10.in-addr.arpa", "PTR")),
    "NXDOMAIN",
    "a free address of ours",
  );
  const outside = respond(t, queryBytes("1.2.0.192.in-addr.arpa", { type: "PTR" }), "10.1.0.3", "udp");
  assert.equal(outside.kind, "forward", "other addresses are the upstream's");
});

test("names not ours are forwarded; a name of ours, our domain and single labels never are", () => {
  const t = scene();
  assert.equal(respond(t, queryBytes("example.com"), "10.1.0.2", "udp").kind, "forward");
  // db is on a network web does not share: NXDOMAIN, not a question to the upstream (no leak either way).
  for (const name of ["db", "nosuch", "nosuch.front.netctx", "netctx"])
    assert.equal(rcode(ask(t, "10.1.0.2", name)), "NXDOMAIN", name);
});

test("updates land in place: a changed context answers with its new address at once, a removed one is gone", () => {
  const t = scene();
  t.apply({
    kind: "context",
    context: { name: "web", aliases: ["www2"], attachments: [{ network: "front", addresses: ["10.1.0.9"] }] },
  });
  assert.deepEqual(data(ask(t, "10.1.0.3", "web")), ["10.1.0.9"]);
  assert.deepEqual(data(ask(t, "10.1.0.3", "www2")), ["10.1.0.9"]);
  assert.equal(rcode(ask(t, "10.1.0.3", "www")), "NXDOMAIN", "the old alias went with the update");
  assert.deepEqual(data(ask(t, "10.1.0.3", "9.0.1.10.in-addr.arpa", "PTR")), ["web.front.netctx"]);
  assert.equal(rcode(ask(t, "10.1.0.3", "2.0.1.10.in-addr.arpa", "PTR")), "NXDOMAIN");
  t.apply({ kind: "context-gone", name: "web" });
  assert.equal(rcode(ask(t, "10.1.0.3", "web")), "NXDOMAIN");
  // A name two contexts share stays while one of them holds it.
  t.apply({
    kind: "context",
    context: {
      name: "a1",
      aliases: ["shared"],
      attachments: [{ network: "front", addresses: ["10.1.0.11"] }],
    },
  });
  t.apply({
    kind: "context",
    context: {
      name: "a2",
      aliases: ["shared"],
      attachments: [{ network: "front", addresses: ["10.1.0.12"] }],
    },
  });
  assert.deepEqual(data(ask(t, "10.1.0.3", "shared")), ["10.1.0.11", "10.1.0.12"]);
  t.apply({ kind: "context-gone", name: "a1" });
  assert.deepEqual(data(ask(t, "10.1.0.3", "shared")), ["10.1.0.12"]);
  // A network gone takes its names and its senders with it.
  t.apply({ kind: "network-gone", name: "back" });
  assert.equal(respond(t, queryBytes("db"), "10.2.0.4", "udp").kind, "drop");
  assert.equal(rcode(ask(t, "10.1.0.3", "db")), "NXDOMAIN");
});

test("bad input: the right RCODE in a bare header no larger than the query, or nothing", () => {
  const t = scene();
  const src = "10.1.0.2";
  const rcodeOf = (bytes: Buffer) => {
    const out = respond(t, bytes, src, "udp");
    if (out.kind !== "reply") return out.kind;
    assert.ok(out.bytes.length <= Math.max(bytes.length, 12), "never larger than the query");
    return out.bytes.readUInt16BE(2) & 0xf;
  };
  const good = queryBytes("web");
  assert.equal(rcodeOf(good.subarray(0, 11)), "drop", "shorter than a header");
  assert.equal(rcodeOf(good.subarray(0, good.length - 3)), RCODE.FORMERR, "truncated question");
  const response = Buffer.from(good);
  response.writeUInt16BE(response.readUInt16BE(2) | 0x8000, 2);
  assert.equal(rcodeOf(response), "drop", "a response is never answered");
  const notify = Buffer.from(good);
  notify.writeUInt16BE((4 << 11) | 0x0100, 2);
  assert.equal(rcodeOf(notify), RCODE.NOTIMP, "opcode NOTIFY");
  const two = Buffer.from(good);
  two.writeUInt16BE(2, 4);
  assert.equal(rcodeOf(two), RCODE.FORMERR, "two questions");
  // A name that is a compression pointer to itself: a loop.
  const loop = Buffer.concat([good.subarray(0, 12), Buffer.from([0xc0, 12, 0, 1, 0, 1])]);
  assert.equal(rcodeOf(loop), RCODE.FORMERR, "compression loop");
  const forward = Buffer.concat([good.subarray(0, 12), Buffer.from([0xc0, 40, 0, 1, 0, 1])]);
  assert.equal(rcodeOf(forward), RCODE.FORMERR, "pointer past the end");
  const oversized = Buffer.concat([good, Buffer.alloc(65_000, 0x41)]);
  assert.ok([RCODE.FORMERR, RCODE.NOERROR].includes(rcodeOf(oversized) as 0 | 1), "trailing bytes");
  assert.equal(rcodeOf(queryBytes("web", { type: "AXFR" })), RCODE.REFUSED);
  assert.equal(rcodeOf(queryBytes("example.com", { type: "IXFR" })), RCODE.REFUSED);
  assert.equal(rcodeOf(queryBytes("web", { type: "ANY" as RecordType })), RCODE.NOTIMP);
  const chaos = encode({
    type: "query",
    id: 7,
    questions: [{ type: "TXT", name: "version.bind", class: "CH" }],
  });
  assert.equal(rcodeOf(chaos), RCODE.NOTIMP, "class CH");
});

test("an answer too big for UDP is truncated (TC), for the client to ask again over TCP", () => {
  const t = scene();
  const many = Array.from({ length: 60 }, (_, i) => `10.1.0.${100 + i}`);
  t.apply({
    kind: "context",
    context: { name: "big", aliases: [], attachments: [{ network: "front", addresses: many }] },
  });
  const udp = ask(t, "10.1.0.3", "big");
  assert.ok(udp.flag_tc);
  assert.deepEqual(udp.answers, []);
  const tcp = respond(t, queryBytes("big"), "10.1.0.3", "tcp");
  assert.equal(decode((tcp as { bytes: Buffer }).bytes).answers?.length, 60);
  const edns = respond(t, queryBytes("big", { edns: true }), "10.1.0.3", "udp");
  assert.equal(decode((edns as { bytes: Buffer }).bytes).answers?.length, 60, "60 A records fit 1232 bytes");
});

test("resolveName: the host's view, per network, and an address's names", () => {
  const t = scene();
  assert.deepEqual(resolveName(t, "app").answers, [
    { network: "front", addresses: ["10.1.0.3"] },
    { network: "back", addresses: ["10.2.0.3"] },
  ]);
  assert.deepEqual(resolveName(t, "app", "back").answers, [{ network: "back", addresses: ["10.2.0.3"] }]);
  assert.deepEqual(resolveName(t, "10.2.0.4").names, ["db.back.netctx"]);
  assert.deepEqual(resolveName(t, "nosuch").answers, []);
});

test("the cache keeps an answer for its smallest TTL, counts it down, and keeps no failure", () => {
  let now = 0;
  const cache = new AnswerCache(() => now);
  const answer = (ttl: number, rcode = 0) =>
    encode({
      type: "response",
      id: 1,
      flags: 0x0180 | rcode,
      questions: [{ type: "A", name: "example.com", class: "IN" }],
      answers: [
        { type: "A", name: "example.com", ttl, data: "192.0.2.1" },
        { type: "A", name: "example.com", ttl: ttl + 100, data: "192.0.2.2" },
      ],
    });
  cache.store("k", answer(10));
  const hit = decode(cache.lookup("k", 4242)!);
  assert.equal(hit.id, 4242);
  now = 4_000;
  assert.deepEqual(
    decode(cache.lookup("k", 1)!).answers?.map((a) => (a as { ttl?: number }).ttl),
    [6, 106],
  );
  now = 10_001;
  assert.equal(cache.lookup("k", 1), undefined, "expired with its smallest TTL");
  cache.store("f", answer(10, RCODE.SERVFAIL));
  assert.equal(cache.lookup("f", 1), undefined);
  cache.store("z", answer(0));
  assert.equal(cache.lookup("z", 1), undefined, "TTL 0 is not kept");
});

test("the feed sends only what changed, networks before their contexts", () => {
  const net = { name: "n", subnets: ["10.9.0.0/24"], listen: ["10.9.0.1"] };
  const a = { name: "a", aliases: [], attachments: [{ network: "n", addresses: ["10.9.0.2"] }] };
  const b = { name: "b", aliases: [], attachments: [{ network: "n", addresses: ["10.9.0.3"] }] };
  const s1: DnsSnapshot = { networks: [net], contexts: [a] };
  assert.deepEqual(
    snapshotChanges({ networks: [], contexts: [] }, s1).map((u) => u.kind),
    ["network", "context"],
  );
  assert.deepEqual(snapshotChanges(s1, s1), []);
  assert.deepEqual(snapshotChanges(s1, { networks: [net], contexts: [b] }), [
    { kind: "context-gone", name: "a" },
    { kind: "context", context: b },
  ]);
  assert.deepEqual(snapshotChanges(s1, { networks: [], contexts: [] }), [
    { kind: "context-gone", name: "a" },
    { kind: "network-gone", name: "n" },
  ]);
});

test("a remote context (key NAME@NODE) answers beside a local one of the same name, and leaves alone", () => {
  const t = scene();
  const view = new Set(["back"]);
  t.apply({
    kind: "context",
    context: {
      name: "db",
      key: "db@h1",
      aliases: [],
      attachments: [{ network: "back", addresses: ["10.2.0.40"] }],
    },
  });
  assert.deepEqual(t.lookup("db", view).v4.sort(), ["10.2.0.4", "10.2.0.40"]);
  assert.deepEqual(t.reverse("10.2.0.40", view).names, ["db.back.netctx"], "PTR gives the name, not the key");
  t.apply({ kind: "context-gone", name: "db@h1" });
  assert.deepEqual(t.lookup("db", view).v4, ["10.2.0.4"], "the local db stays");
  assert.deepEqual(t.reverse("10.2.0.40", view).names, []);
});
