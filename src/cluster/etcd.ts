/**
 * netctx's etcd client: etcd3 (gRPC) behind the few calls the cluster needs, every one bounded. A request that etcd
 * does not answer fails within REQUEST_LIMIT_MS with one line naming the endpoints and the cause, never hangs: the
 * engine keeps serving local work while etcd is away, and the CLI gives the user a line instead of a spinner.
 *
 * etcd3's own fault handling stays on: a failed member is skipped and the call retried on another at once; a member
 * that failed three times in a row is left alone for 5 s (its circuit breaker), so a member that comes back is
 * used again within 5 s.
 */
import { readFileSync } from "node:fs";
import type { Etcd3, ICompare, IKeyValue, IOptions } from "etcd3";
import type { EtcdTls } from "../config.ts";
import { errorLine, invalid, NetctxError } from "../errors.ts";
import { prefixEnd } from "./keys.ts";

/**
 * The whole budget of one call, retries included: under the 5 s the issue promises, with room for the caller (a CLI
 * process's own start and its hop through the engine take most of a second on a busy host).
 */
export const REQUEST_LIMIT_MS = 3000;
/** One attempt on one member: short enough that a member that accepts but never answers leaves time for another. */
const ATTEMPT_MS = 1500;
/** One keepalive on one member: three members fit in the budget. */
const KEEPALIVE_ATTEMPT_MS = 900;

type EtcdLib = typeof import("etcd3");

export interface EtcdEndpoints {
  readonly endpoints: readonly string[];
  readonly tls: EtcdTls;
}

/** One key as read: its value, the lease it is attached to ("0": none) and its revision for compare-and-swap. */
export interface Entry {
  readonly key: string;
  readonly value: string;
  readonly lease: string;
  readonly modRevision: string;
}

/** What a lease has left: seconds until it expires and the TTL it was granted with. */
export interface LeaseLife {
  readonly ttl: number;
  readonly granted: number;
}

/** One comparison of a transaction: the key still has this modification revision ("0": the key does not exist). */
export interface Unchanged {
  readonly key: string;
  readonly modRevision: string;
}

/**
 * A condition of commit(): a key unchanged (as above), no key at all under a prefix, or no key under a prefix
 * written after a revision (a snapshot's: nothing was added or changed there since it was read).
 */
export type Condition =
  | Unchanged
  | { readonly emptyPrefix: string }
  | { readonly prefix: string; readonly unchangedSince: string };

/** A write of commit(): put a value, or delete a key. */
export type Write = { readonly put: string; readonly value: string } | { readonly delete: string };

/** A prefix's keys as of one revision: the revision a later commit() can compare against. */
export interface Snapshot {
  readonly entries: Entry[];
  readonly revision: string;
}

/** A watch opened by watchPrefix: close() ends it. */
export interface PrefixWatch {
  close(): Promise<void>;
}

export class Etcd {
  /** For error lines: the endpoints, as the user gave them. */
  readonly where: string;

  /** The member whose keepalive answered last: tried first next time. */
  private preferred = 0;
  /** Requests sent so far (each call below is one), for the engine's metrics and the bench. */
  private sent = 0;

  private constructor(
    private readonly lib: EtcdLib,
    private readonly client: Etcd3,
    private readonly members: readonly Etcd3[],
    endpoints: readonly string[],
  ) {
    this.where = endpoints.join(",");
  }

  /**
   * A client for these endpoints; it connects on the first call. Unreadable TLS files fail here, naming the option.
   * etcd3 (gRPC and its protobuf loader, ~0.2 s) is imported here, so commands that never talk to etcd don't pay.
   */
  static async open(c: EtcdEndpoints): Promise<Etcd> {
    const read = (field: string, file: string | undefined): Buffer | undefined => {
      if (file === undefined) return undefined;
      try {
        return readFileSync(file);
      } catch (err) {
        throw invalid(field, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? errorLine(err)}`);
      }
    };
    const ca = read("etcd-cacert", c.tls.caFile);
    const cert = read("etcd-cert", c.tls.certFile);
    const key = read("etcd-key", c.tls.keyFile);
    if ((cert || key) && !c.endpoints.every((u) => u.startsWith("https://")))
      throw invalid("etcd", "a client certificate needs https:// endpoints");
    const lib = await import("etcd3");
    const options = (hosts: string[]): IOptions => ({
      hosts,
      ...(ca || cert
        ? {
            credentials: {
              // Without --etcd-cacert the server is checked against the system's CAs, as etcdctl does.
              rootCertificate: ca ?? Buffer.alloc(0),
              ...(key ? { privateKey: key } : {}),
              ...(cert ? { certChain: cert } : {}),
            },
          }
        : {}),
      dialTimeout: ATTEMPT_MS,
      // Per attempt (etcd3 resolves these for each retry); watches, which must stay open, get none.
      defaultCallOptions: (call) => (call.service === "Watch" ? {} : { deadline: Date.now() + ATTEMPT_MS }),
      grpcOptions: {
        // gRPC's reconnect backoff grows to 120 s by default: a member back after a long outage would wait for it.
        "grpc.initial_reconnect_backoff_ms": 200,
        "grpc.max_reconnect_backoff_ms": 2000,
      },
    });
    const client = new lib.Etcd3(options([...c.endpoints]));
    // Keepalive streams bypass etcd3's retries (a stream that fails later is not retried): one client per member,
    // so a renewal can go to the member that answered last and move on to the next when it does not.
    const members = c.endpoints.map((url) => new lib.Etcd3(options([url])));
    return new Etcd(lib, client, members, c.endpoints);
  }

  close(): void {
    this.client.close();
    for (const m of this.members) m.close();
  }

  /** How many requests this client has sent (every call of this class is one, retries aside). */
  get requests(): number {
    return this.sent;
  }

  /** Every key under prefix with the store's revision of that read. */
  snapshot(prefix: string): Promise<Snapshot> {
    return this.call(`range ${prefix}`, async () => {
      const res = await this.client.kv.range({ key: Buffer.from(prefix), range_end: prefixEnd(prefix) });
      return { entries: res.kvs.map(entry), revision: res.header.revision };
    });
  }

  /**
   * One transaction: the writes happen only if every condition holds; false (nothing written) otherwise. An
   * emptyPrefix condition compares the version of every key in the range with 0, which etcd takes as true for an
   * empty range (its applyCompare compares a missing key as a zero KeyValue) and false for any key.
   */
  commit(conditions: readonly Condition[], writes: readonly Write[]): Promise<boolean> {
    return this.call("txn", async () => {
      const res = await this.client.kv.txn({
        compare: conditions.map(comparison),
        success: writes.map((w) =>
          "put" in w
            ? { request_put: { key: Buffer.from(w.put), value: Buffer.from(w.value) } }
            : { request_delete_range: { key: Buffer.from(w.delete) } },
        ),
        failure: [],
      });
      return res.succeeded;
    });
  }

  /**
   * Calls `changed` whenever a key under prefix changes, and when the watch (re)connects, so the caller reads the
   * prefix again instead of trusting the events: it converges from whatever it missed while etcd was away. etcd3
   * reconnects a broken watch by itself; the caller's own periodic read is the net under that.
   */
  watchPrefix(prefix: string, changed: () => void, log: (line: string) => void): PrefixWatch {
    this.sent++;
    // watcher(), not create(): create() waits for etcd to answer, and the engine must start while etcd is away.
    const watcher = this.client.watch().prefix(prefix).watcher();
    let down = false;
    watcher.on("put", () => changed());
    watcher.on("delete", () => changed());
    watcher.on("connected", () => {
      if (down) log(`cluster: watch of ${prefix} resumed`);
      down = false;
      changed();
    });
    watcher.on("disconnected", () => {
      down = true;
    });
    watcher.on("error", () => {
      down = true;
    });
    return { close: () => watcher.cancel() };
  }

  /** Every key under prefix, in key order. */
  range(prefix: string): Promise<Entry[]> {
    return this.call(`range ${prefix}`, async () => {
      const res = await this.client.kv.range({ key: Buffer.from(prefix), range_end: prefixEnd(prefix) });
      return res.kvs.map(entry);
    });
  }

  get(key: string): Promise<Entry | undefined> {
    return this.call(`get ${key}`, async () => {
      const res = await this.client.kv.range({ key: Buffer.from(key) });
      const kv = res.kvs[0];
      return kv ? entry(kv) : undefined;
    });
  }

  /** Writes key; with a lease the key is deleted when the lease expires. */
  put(key: string, value: string, lease?: string): Promise<void> {
    return this.call(`put ${key}`, async () => {
      await this.client.kv.put({
        key: Buffer.from(key),
        value: Buffer.from(value),
        ...(lease ? { lease } : {}),
      });
    });
  }

  /** Deletes keys in one transaction if each is still at its revision; false (nothing deleted) if one changed. */
  deleteIfUnchanged(keys: readonly Unchanged[]): Promise<boolean> {
    return this.call("delete", async () => {
      const res = await this.client.kv.txn({
        compare: keys.map((k) => ({
          key: Buffer.from(k.key),
          target: "Mod",
          result: "Equal",
          mod_revision: k.modRevision,
        })),
        success: keys.map((k) => ({ request_delete_range: { key: Buffer.from(k.key) } })),
        failure: [],
      });
      return res.succeeded;
    });
  }

  /** A new lease of ttl seconds; its id. */
  grant(ttl: number): Promise<string> {
    return this.call("lease grant", async () => {
      const res = await this.client.leaseClient.leaseGrant({ TTL: ttl, ID: 0 });
      return res.ID;
    });
  }

  /** Renews a lease once; the seconds it has now, 0 when etcd no longer knows it (expired or revoked). */
  keepAlive(id: string): Promise<number> {
    return this.call("lease keepalive", async () => {
      let failure: unknown;
      for (let i = 0; i < this.members.length; i++) {
        const at = (this.preferred + i) % this.members.length;
        try {
          const ttl = await this.keepAliveOn(this.members[at]!, id);
          this.preferred = at;
          return ttl;
        } catch (err) {
          failure = err;
        }
      }
      throw failure;
    });
  }

  /** etcd has no unary keepalive: one short-lived stream to one member, one request, one answer. */
  private async keepAliveOn(member: Etcd3, id: string): Promise<number> {
    const stream = await member.leaseClient.leaseKeepAlive({ deadline: Date.now() + KEEPALIVE_ATTEMPT_MS });
    try {
      return await new Promise<number>((resolve, reject) => {
        stream.on("data", (res: { TTL: string }) => resolve(Number(res.TTL)));
        stream.on("error", (err: Error) => reject(this.lib.castGrpcError(err)));
        stream.write({ ID: id });
      });
    } finally {
      stream.end();
    }
  }

  /** What a lease has left, or undefined when it is gone. */
  leaseLife(id: string): Promise<LeaseLife | undefined> {
    return this.call("lease timetolive", async () => {
      const res = await this.client.leaseClient.leaseTimeToLive({ ID: id, keys: false });
      const ttl = Number(res.TTL);
      return ttl < 0 ? undefined : { ttl, granted: Number(res.grantedTTL) };
    });
  }

  /** Revokes a lease, deleting the keys attached to it; a lease already gone is fine. */
  revoke(id: string): Promise<void> {
    return this.call("lease revoke", async () => {
      try {
        await this.client.leaseClient.leaseRevoke({ ID: id });
      } catch (err) {
        if (!(this.lib.castGrpcError(err as Error) instanceof this.lib.EtcdLeaseInvalidError)) throw err;
      }
    });
  }

  /**
   * Runs one request within REQUEST_LIMIT_MS, whatever the client does underneath (retries, a stream that never
   * answers), and turns any failure into one NetctxError line naming the endpoints.
   */
  private async call<T>(op: string, run: () => Promise<T>): Promise<T> {
    this.sent++;
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new NetctxError("unavailable", `no answer within ${REQUEST_LIMIT_MS / 1000} s`)),
        REQUEST_LIMIT_MS,
      );
    });
    try {
      return await Promise.race([run(), limit]);
    } catch (err) {
      const waited = (Date.now() - started) / 1000;
      throw new NetctxError(
        "unavailable",
        `etcd at ${this.where}: ${op}: ${cause(err)}${waited >= 0.5 ? ` after ${waited.toFixed(1)} s` : ""}`,
        "etcd",
      );
    } finally {
      clearTimeout(timer);
    }
  }
}

function comparison(c: Condition): ICompare {
  if ("emptyPrefix" in c)
    return {
      key: Buffer.from(c.emptyPrefix),
      range_end: prefixEnd(c.emptyPrefix),
      target: "Version",
      result: "Equal",
      version: 0,
    };
  if ("prefix" in c)
    return {
      key: Buffer.from(c.prefix),
      range_end: prefixEnd(c.prefix),
      target: "Mod",
      result: "Less",
      mod_revision: String(BigInt(c.unchangedSince) + 1n),
    };
  return { key: Buffer.from(c.key), target: "Mod", result: "Equal", mod_revision: c.modRevision };
}

function entry(kv: IKeyValue): Entry {
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    lease: kv.lease,
    modRevision: kv.mod_revision,
  };
}

/** gRPC's text, shortened to what tells a user something ("unreachable (connect ECONNREFUSED 10.0.0.1:2379)"). */
function cause(err: unknown): string {
  const text = errorLine(err).replace(/\s+/g, " ").trim();
  if (/circuit breaker is open/i.test(text)) return "unreachable (every member failed just now)";
  if (/deadline exceeded/i.test(text)) return "no answer (deadline exceeded)";
  // TLS failures arrive as OpenSSL's text inside gRPC's: say what to change instead.
  if (/alert (bad certificate|certificate required|handshake failure)|alert number (4[02]|116)/i.test(text))
    return "etcd refused the TLS handshake: it wants a client certificate it trusts (--etcd-cert, --etcd-key)";
  if (/self[- ]signed|unable to (verify|get local issuer)|certificate verify failed/i.test(text))
    return "etcd's certificate is not signed by a CA we trust (--etcd-cacert)";
  if (/ERR_TLS_CERT_ALTNAME_INVALID|does not match certificate's altnames/i.test(text))
    return "etcd's certificate does not name the address we connect to";
  // grpc-js: "14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED ... Resolution note: "
  const last = /Last error: (?:Error: )?(.*?)\.?(?: Resolution note:.*)?$/.exec(text);
  if (last?.[1]) return `unreachable (${last[1]})`;
  return text.replace(/^\d+ [A-Z_]+: /, "");
}
