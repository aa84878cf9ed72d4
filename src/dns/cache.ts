/**
 * The forwarder's cache: upstream answers by question, kept as long as their smallest TTL says (at most
 * MAX_TTL_S), served with the TTLs counted down and the client's id. Bounded: past MAX_ENTRIES the oldest goes.
 */
import { nameCodec } from "./codec.ts";

const MAX_TTL_S = 300;
const MAX_ENTRIES = 10_000;
const OPT = 41;

interface Entry {
  bytes: Buffer;
  /** Offsets of the TTL fields of its records (OPT's is not a TTL). */
  ttlAt: number[];
  storedMs: number;
  expiresMs: number;
}

/** The TTL fields of a message's records, or undefined when it does not parse. */
export function ttlOffsets(msg: Buffer): number[] | undefined {
  try {
    const counts = [4, 6, 8, 10].map((o) => msg.readUInt16BE(o));
    let at = 12;
    for (let i = 0; i < counts[0]!; i++) {
      nameCodec.decode(msg, at);
      at += nameCodec.decode.bytes + 4;
    }
    const out: number[] = [];
    const records = counts[1]! + counts[2]! + counts[3]!;
    for (let i = 0; i < records; i++) {
      nameCodec.decode(msg, at);
      at += nameCodec.decode.bytes;
      const type = msg.readUInt16BE(at);
      if (type !== OPT) out.push(at + 4);
      at += 10 + msg.readUInt16BE(at + 8);
    }
    if (at > msg.length) return undefined;
    return out;
  } catch {
    return undefined;
  }
}

export class AnswerCache {
  private readonly entries = new Map<string, Entry>();
  constructor(private readonly now: () => number = () => performance.now()) {}

  get size(): number {
    return this.entries.size;
  }

  /** Keep an upstream answer: NOERROR or NXDOMAIN with at least one record to take a TTL from, not truncated. */
  store(key: string, bytes: Buffer): void {
    const flags = bytes.readUInt16BE(2);
    const rcode = flags & 0xf;
    if (flags & 0x0200 || (rcode !== 0 && rcode !== 3)) return;
    const ttlAt = ttlOffsets(bytes);
    if (!ttlAt || ttlAt.length === 0) return;
    const ttl = Math.min(MAX_TTL_S, ...ttlAt.map((o) => bytes.readUInt32BE(o)));
    if (ttl <= 0) return;
    const now = this.now();
    this.entries.delete(key);
    if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { bytes: Buffer.from(bytes), ttlAt, storedMs: now, expiresMs: now + ttl * 1000 });
  }

  /** The cached answer for `key` with `id` and the TTLs less the time it has been kept; undefined when expired. */
  lookup(key: string, id: number): Buffer | undefined {
    return this.lookupHeld(key, id)?.bytes;
  }

  /**
   * The same, with the moment it stops being the answer: when its TTLs count down one more second, or it expires
   * (answer-memo.ts keeps it that long).
   */
  lookupHeld(key: string, id: number): { bytes: Buffer; validUntil: number } | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    const now = this.now();
    if (now >= entry.expiresMs) {
      this.entries.delete(key);
      return undefined;
    }
    const out = Buffer.from(entry.bytes);
    out.writeUInt16BE(id, 0);
    const aged = Math.floor((now - entry.storedMs) / 1000);
    for (const o of entry.ttlAt) out.writeUInt32BE(Math.max(0, out.readUInt32BE(o) - aged), o);
    const validUntil = Math.min(entry.expiresMs, entry.storedMs + (aged + 1) * 1000);
    return { bytes: out, validUntil };
  }
}
