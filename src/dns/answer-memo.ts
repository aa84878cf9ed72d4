/**
 * Finished answers by sender and query bytes: a query whose bytes after the id match one answered before, from the
 * same sender, gets the same answer with its own id, without decoding it again or building records. Measured under
 * dnsperf (bench/dns.ts): decoding and encoding with dns-packet cost ~10-15 us a query, a third to a half of what
 * a query cost in all; a hit here costs one string and one copy.
 *
 * An answer depends on nothing else: the sender decides the view, the bytes after the id hold the flags, the
 * question as asked (case kept), the EDNS size and so the size limit. The tables' answers hold until the tables
 * change (the owner calls clear()); a forwarded answer from the cache holds until its TTLs would count down
 * one more second, or it expires, whichever comes first.
 */

/** Past this many answers the memo starts again: a sender asking random names must not grow it without end. */
const MAX_ENTRIES = 20_000;

interface Memo {
  bytes: Buffer;
  /** performance.now() after which the answer may differ; Infinity: until clear(). */
  validUntil: number;
}

export class AnswerMemo {
  private readonly entries = new Map<string, Memo>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** The key of a query from `source`: the sender and the query's bytes after its id. */
  static keyOf(source: string, query: Buffer): string {
    return AnswerMemo.keyAt(source, query, 0, query.length);
  }

  /** keyOf for the query in bytes [start, end) of `bytes` (a batch of datagrams read at once), without a copy. */
  static keyAt(source: string, bytes: Buffer, start: number, end: number): string {
    return `${source} ${bytes.toString("latin1", start + 2, end)}`;
  }

  /** The answer for `key` with the query's `id`, a fresh buffer; undefined when none is held or it went stale. */
  answer(key: string, id: number): Buffer | undefined {
    const held = this.held(key);
    if (!held) return undefined;
    const out = Buffer.allocUnsafe(held.length);
    held.copy(out);
    out.writeUInt16BE(id, 0);
    return out;
  }

  /** The answer kept for `key`, as kept (its id is the first asker's: the caller writes the query's over it). */
  held(key: string): Buffer | undefined {
    const memo = this.entries.get(key);
    if (!memo) return undefined;
    if (this.now() >= memo.validUntil) {
      this.entries.delete(key);
      return undefined;
    }
    return memo.bytes;
  }

  /** Keeps `bytes` as they are (not copied): the caller sends them and never changes them afterwards. */
  keep(key: string, bytes: Buffer, validUntil = Number.POSITIVE_INFINITY): void {
    if (this.entries.size >= MAX_ENTRIES) this.entries.clear();
    this.entries.set(key, { bytes, validUntil });
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
