/**
 * Forwarding of names that are not ours to the host's upstream resolvers: each query leaves from a fresh socket
 * (random port) with a random id, and only an answer from the upstream asked, with that id and the same question,
 * is taken (the usual guard against spoofed answers). Identical questions in flight share one upstream query.
 */
import { randomInt } from "node:crypto";
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import { AnswerCache } from "./cache.ts";
import { RCODE } from "./query.ts";

/** Per upstream; a lost answer moves on to the next, and the client (which retries after ~5 s) is not kept waiting. */
const UPSTREAM_TIMEOUT_MS = 1500;
const MAX_ANSWER = 65_535;
/**
 * Upstream queries under way at once, at most: each holds a socket for up to UPSTREAM_TIMEOUT_MS per upstream, and a
 * context asking for random names must not exhaust the engine's descriptors. Past it, SERVFAIL at once.
 */
export const MAX_IN_FLIGHT = 256;

export interface ForwardRequest {
  raw: Buffer;
  id: number;
  key: string;
  limit: number;
  transport: "udp" | "tcp";
  fail: (rcode: number) => Buffer;
  truncated: () => Buffer;
}

export class Forwarder {
  private upstreams: string[];
  private readonly cache = new AnswerCache();
  private readonly inFlight = new Map<string, Promise<Buffer | undefined>>();

  constructor(upstreams: string[]) {
    this.upstreams = upstreams;
  }

  setUpstreams(upstreams: string[]): void {
    this.upstreams = upstreams;
  }

  get cached(): number {
    return this.cache.size;
  }

  /** The cached answer for the client, if one is held, and until when it holds (answer-memo.ts). */
  cachedAnswer(req: ForwardRequest): { bytes: Buffer; validUntil: number } | undefined {
    const hit = this.cache.lookupHeld(req.key, req.id);
    return hit && { bytes: fit(hit.bytes, req), validUntil: hit.validUntil };
  }

  /** The answer for the client: cached, fresh from an upstream, SERVFAIL when none answered. */
  async forward(req: ForwardRequest): Promise<Buffer> {
    const hit = this.cache.lookup(req.key, req.id);
    if (hit) return fit(hit, req);
    const flightKey = `${req.transport} ${req.key}`;
    let pending = this.inFlight.get(flightKey);
    if (!pending && this.inFlight.size >= MAX_IN_FLIGHT) return req.fail(RCODE.SERVFAIL);
    if (!pending) {
      pending = this.ask(req).finally(() => this.inFlight.delete(flightKey));
      this.inFlight.set(flightKey, pending);
    }
    const answer = await pending;
    if (!answer) return req.fail(RCODE.SERVFAIL);
    const out = Buffer.from(answer);
    out.writeUInt16BE(req.id, 0);
    return fit(out, req);
  }

  private async ask(req: ForwardRequest): Promise<Buffer | undefined> {
    for (const upstream of this.upstreams) {
      const id = randomInt(0, 0x10000);
      const query = Buffer.from(req.raw);
      query.writeUInt16BE(id, 0);
      const answer = req.transport === "tcp" ? await askTcp(upstream, query) : await askUdp(upstream, query);
      if (answer && sameQuestion(query, answer)) {
        this.cache.store(req.key, answer);
        return answer;
      }
    }
    return undefined;
  }
}

function fit(answer: Buffer, req: ForwardRequest): Buffer {
  return answer.length > req.limit ? req.truncated() : answer;
}

/** Same id, QR set, and the question section byte for byte (names without regard to case). */
function sameQuestion(query: Buffer, answer: Buffer): boolean {
  if (answer.length < 12 || answer.readUInt16BE(0) !== query.readUInt16BE(0)) return false;
  if (!(answer.readUInt16BE(2) & 0x8000) || answer.readUInt16BE(4) !== 1) return false;
  const end = questionEnd(query);
  if (end === undefined || answer.length < end) return false;
  return (
    query.subarray(12, end).toString("latin1").toLowerCase() ===
    answer.subarray(12, end).toString("latin1").toLowerCase()
  );
}

/** Where the first question ends (the query passed our own checks, so its name has no pointers). */
function questionEnd(msg: Buffer): number | undefined {
  let at = 12;
  while (at < msg.length) {
    const len = msg[at]!;
    if (len === 0) return at + 5;
    if (len & 0xc0) return at + 6;
    at += len + 1;
  }
  return undefined;
}

function askUdp(upstream: string, query: Buffer): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = createSocket(upstream.includes(":") ? "udp6" : "udp4");
    const done = (answer: Buffer | undefined) => {
      clearTimeout(timer);
      socket.close();
      resolve(answer);
    };
    const timer = setTimeout(() => done(undefined), UPSTREAM_TIMEOUT_MS);
    socket.on("error", () => done(undefined));
    socket.on("message", (msg, rinfo) => {
      // Anyone may send to our port: only the upstream's answer with our id counts, the rest is ignored.
      if (rinfo.address !== upstream || rinfo.port !== 53) return;
      if (msg.length < 12 || msg.readUInt16BE(0) !== query.readUInt16BE(0)) return;
      done(msg);
    });
    socket.send(query, 53, upstream);
  });
}

function askTcp(upstream: string, query: Buffer): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host: upstream, port: 53 });
    let got = Buffer.alloc(0);
    const done = (answer: Buffer | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(undefined), UPSTREAM_TIMEOUT_MS);
    socket.on("error", () => done(undefined));
    socket.on("connect", () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(query.length);
      socket.write(Buffer.concat([len, query]));
    });
    socket.on("data", (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0))
        done(got.subarray(2, 2 + got.readUInt16BE(0)));
      else if (got.length > MAX_ANSWER + 2) done(undefined);
    });
    socket.on("end", () => done(undefined));
  });
}
