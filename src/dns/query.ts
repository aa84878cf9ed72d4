/**
 * One query in, one outcome out: the answer from the tables, a refusal with the right RCODE, a query to forward,
 * or nothing at all. No sockets here (server.ts), so the rules can be tested without a kernel.
 *
 * Rules, in order: a sender outside every served subnet gets nothing (not an open resolver, not an amplifier); a
 * packet shorter than a header or that is itself a response is dropped; anything else that is not one plain
 * question gets a bare header with FORMERR/NOTIMP/REFUSED, never larger than what came in.
 */
import { decode, type OwnRecord, type Question, questionCodec, recordCodec } from "./codec.ts";
import type { NameTables } from "./tables.ts";

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

const QR = 0x8000;
const AA = 0x0400;
const TC = 0x0200;
const RD = 0x0100;
const RA = 0x0080;
const HEADER = 12;
/** Without EDNS a UDP answer fits 512 bytes (RFC 1035); with it, what the client offers, up to 1232 (DNS flag day 2020). */
const UDP_PLAIN = 512;
const UDP_EDNS_MAX = 1232;
/**
 * Our names change live: a cache between us and the client would keep a removed context's name. TTL 0 tells
 * resolvers not to keep them (each lookup costs one query to the gateway, which is what this server is for).
 */
const OWN_TTL = 0;

export type Transport = "udp" | "tcp";

export type Outcome =
  | { kind: "drop"; why: string }
  | { kind: "reply"; bytes: Buffer }
  | {
      kind: "forward";
      /** The query as received; the forwarder sends it with an id of its own. */
      raw: Buffer;
      id: number;
      /** Cache key: name (lower case), type and class. */
      key: string;
      /** The largest answer the client takes over this transport. */
      limit: number;
      /** A bare header for this query with an RCODE, for when forwarding fails. */
      fail: (rcode: number) => Buffer;
      /** The question with TC set and no records: an upstream answer too big for the client's transport. */
      truncated: () => Buffer;
    };

/** A bare reply header: the query's id, opcode and RD, QR set, no records. Never longer than a header. */
function bareReply(query: Buffer, rcode: number): Buffer {
  const out = Buffer.alloc(HEADER);
  out.writeUInt16BE(query.readUInt16BE(0), 0);
  const flags = query.readUInt16BE(2);
  out.writeUInt16BE(QR | (flags & 0x7800) | (flags & RD) | RA | rcode, 2);
  return out;
}

/** The networks whose names a sender sees; undefined: a sender this listener does not serve. */
export type ViewOf = (source: string) => ReadonlySet<string> | undefined;

export function respond(
  tables: NameTables,
  query: Buffer,
  source: string,
  transport: Transport,
  viewOf: ViewOf = (s) => tables.viewOf(s),
): Outcome {
  const view = viewOf(source);
  if (!view) return { kind: "drop", why: "a sender this listener does not serve" };
  if (query.length < HEADER) return { kind: "drop", why: "shorter than a header" };
  const flags = query.readUInt16BE(2);
  // Answering a response would let two servers bounce a packet between them forever.
  if (flags & QR) return { kind: "drop", why: "a response, not a query" };
  if (((flags >> 11) & 0xf) !== 0) return { kind: "reply", bytes: bareReply(query, RCODE.NOTIMP) };
  const qd = query.readUInt16BE(4);
  const an = query.readUInt16BE(6);
  const ns = query.readUInt16BE(8);
  const ar = query.readUInt16BE(10);
  // One question, and at most the OPT record of EDNS: anything else is not a query we take.
  if (qd !== 1 || an !== 0 || ns !== 0 || ar > 1)
    return { kind: "reply", bytes: bareReply(query, RCODE.FORMERR) };
  let q: Question;
  let questionEnd: number;
  let ednsSize: number | undefined;
  try {
    const packet = decode(query);
    q = packet.questions?.[0] as Question;
    questionEnd = HEADER + questionCodec.decode.bytes;
    const opt = packet.additionals?.[0];
    if (opt) {
      if (opt.type !== "OPT") return { kind: "reply", bytes: bareReply(query, RCODE.FORMERR) };
      ednsSize = Math.min(Math.max(opt.udpPayloadSize, UDP_PLAIN), UDP_EDNS_MAX);
    }
  } catch {
    // Truncated, a bad label or a compression pointer that does not point backwards (a loop): refuse, briefly.
    return { kind: "reply", bytes: bareReply(query, RCODE.FORMERR) };
  }
  if (q.class !== "IN") return { kind: "reply", bytes: bareReply(query, RCODE.NOTIMP) };
  // Zone transfers are not served over any transport; ANY is not answered (RFC 8482 lets a server refuse it).
  if (q.type === "AXFR" || q.type === "IXFR")
    return { kind: "reply", bytes: bareReply(query, RCODE.REFUSED) };
  if ((q.type as string) === "ANY") return { kind: "reply", bytes: bareReply(query, RCODE.NOTIMP) };
  const limit = transport === "tcp" ? 65_535 : (ednsSize ?? UDP_PLAIN);
  const rawQuestion = query.subarray(HEADER, questionEnd);

  const reverse = reverseAddress(q.name);
  if (reverse !== undefined) {
    const r = tables.reverse(reverse, view);
    if (r.owned) {
      const answers =
        q.type === "PTR"
          ? r.names.map((data) => ({ type: "PTR" as const, name: q.name, ttl: OWN_TTL, data }))
          : [];
      const rcode = r.names.length > 0 ? RCODE.NOERROR : RCODE.NXDOMAIN;
      return { kind: "reply", bytes: ownAnswer(query, rawQuestion, rcode, answers, ednsSize, limit) };
    }
  } else {
    const found = tables.lookup(q.name, view);
    if (found.owned) {
      const answers =
        q.type === "A"
          ? found.v4.map((data) => ({ type: "A" as const, name: q.name, ttl: OWN_TTL, data }))
          : q.type === "AAAA"
            ? found.v6.map((data) => ({ type: "AAAA" as const, name: q.name, ttl: OWN_TTL, data }))
            : [];
      const rcode = found.found ? RCODE.NOERROR : RCODE.NXDOMAIN;
      return { kind: "reply", bytes: ownAnswer(query, rawQuestion, rcode, answers, ednsSize, limit) };
    }
  }
  return {
    kind: "forward",
    raw: query,
    id: query.readUInt16BE(0),
    key: `${q.name.toLowerCase()}|${q.type}|${q.class}`,
    limit,
    fail: (rcode) => bareReply(query, rcode),
    truncated: () => ownAnswer(query, rawQuestion, RCODE.NOERROR, [], undefined, 0, false),
  };
}

/** An authoritative answer: the question as it came (case and type number kept), our records, EDNS if asked. */
function ownAnswer(
  query: Buffer,
  rawQuestion: Buffer,
  rcode: number,
  records: OwnRecord[],
  ednsSize: number | undefined,
  limit: number,
  authoritative = true,
): Buffer {
  const opt =
    ednsSize === undefined
      ? []
      : [
          recordCodec.encode({
            type: "OPT",
            name: ".",
            udpPayloadSize: UDP_EDNS_MAX,
            extendedRcode: 0,
            ednsVersion: 0,
            flags: 0,
          }),
        ];
  const encoded = records.map((r) => recordCodec.encode(r));
  let answers = encoded;
  let truncated = false;
  const size = (list: Buffer[]) =>
    HEADER + rawQuestion.length + [...list, ...opt].reduce((n, b) => n + b.length, 0);
  if (size(answers) > limit || limit === 0) {
    // Too big for the transport: the client retries over TCP (RFC 1035 4.2.1).
    answers = [];
    truncated = true;
  }
  const head = Buffer.alloc(HEADER);
  head.writeUInt16BE(query.readUInt16BE(0), 0);
  const rd = query.readUInt16BE(2) & RD;
  head.writeUInt16BE(QR | (authoritative ? AA : 0) | rd | RA | (truncated ? TC : 0) | rcode, 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(answers.length, 6);
  head.writeUInt16BE(opt.length, 10);
  return Buffer.concat([head, rawQuestion, ...answers, ...opt]);
}

/** The address a reverse name stands for (4.3.2.1.in-addr.arpa -> 1.2.3.4, 32 nibbles of ip6.arpa), if it is one. */
export function reverseAddress(qname: string): string | undefined {
  const name = qname.toLowerCase().replace(/\.$/, "");
  if (name.endsWith(".in-addr.arpa")) {
    const labels = name.slice(0, -".in-addr.arpa".length).split(".");
    if (labels.length !== 4 || !labels.every((l) => /^(0|[1-9]\d{0,2})$/.test(l) && Number(l) < 256))
      return undefined;
    return labels.reverse().join(".");
  }
  if (name.endsWith(".ip6.arpa")) {
    const labels = name.slice(0, -".ip6.arpa".length).split(".");
    if (labels.length !== 32 || !labels.every((l) => /^[0-9a-f]$/.test(l))) return undefined;
    const hex = labels.reverse().join("");
    return hex.match(/.{4}/g)!.join(":");
  }
  return undefined;
}
