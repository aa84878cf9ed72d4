/**
 * A node's membership: its record in etcd under a lease the engine keeps alive. The engine never depends on etcd
 * to run: when etcd is unreachable it logs once, keeps serving, and keeps trying every TTL/3; when etcd answers
 * again it renews the same lease (etcd extends every lease when a leader is elected, so an outage alone does not
 * expire it) or, if the lease is gone (it outlived its TTL, or `cluster forget` revoked it), registers anew under a
 * new one. No restart is ever needed.
 *
 * A stopped engine does not revoke its lease: a restart (an upgrade) replaces the record under a new lease before
 * peers notice, and a node that stays down vanishes from its peers when its TTL runs out.
 */
import { errorLine } from "../errors.ts";
import type { Etcd } from "./etcd.ts";
import { nodeKey } from "./keys.ts";
import type { BlockRef, NodeRecord } from "./node-record.ts";

/** What the node's engine reports about itself, asked at every renewal. */
export interface NodeFacts {
  contexts: number;
  blocks: BlockRef[];
  vtepMac: string;
  /** MAC of the underlay device (the node record's underlayMac); absent while the engine has not found it. */
  underlayMac?: string | undefined;
}

export interface MembershipOptions {
  etcd: Etcd;
  name: string;
  underlay: string;
  /** Lease TTL, seconds. */
  ttl: number;
  version: string;
  facts: () => NodeFacts;
  log: (line: string) => void;
}

/** This node as the engine sees it: for `cluster status` through the engine. */
export interface MembershipState {
  name: string;
  underlay: string;
  /** Whether the record is in etcd as far as the engine knows (its last request succeeded). */
  registered: boolean;
  lease: string | undefined;
  /** ISO time of the last renewal etcd confirmed. */
  lastRenewal: string | undefined;
  /** Why the last attempt failed, while it does. */
  error: string | undefined;
  /** Registrations so far: 1 after start, +1 each time the lease was lost and taken anew. */
  registrations: number;
}

export class Membership {
  private lease: string | undefined;
  private registeredAt: string | undefined;
  /** The record as last written, without registeredAt: republished when the facts change. */
  private written: string | undefined;
  private lastRenewal: number | undefined;
  private error: string | undefined;
  private registrations = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;

  constructor(private readonly o: MembershipOptions) {}

  /** Registers now and renews every TTL/3 until stop(). Resolves after the first attempt, whatever its outcome. */
  start(): Promise<void> {
    this.timer = setInterval(() => void this.tick(), (this.o.ttl * 1000) / 3);
    return this.tick();
  }

  /** Stops renewing and waits for a request in flight; the lease runs out on its own (see above). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.inFlight;
  }

  state(): MembershipState {
    return {
      name: this.o.name,
      underlay: this.o.underlay,
      registered: this.lease !== undefined && this.error === undefined,
      lease: this.lease,
      lastRenewal: this.lastRenewal === undefined ? undefined : new Date(this.lastRenewal).toISOString(),
      error: this.error,
      registrations: this.registrations,
    };
  }

  /** One renewal (or registration); never throws, never overlaps another. */
  tick(): Promise<void> {
    this.inFlight ??= this.renew().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async renew(): Promise<void> {
    try {
      if (this.lease !== undefined && (await this.o.etcd.keepAlive(this.lease)) <= 0) {
        this.o.log(
          `cluster: lease ${this.lease} of node ${this.o.name} is gone (expired or revoked); registering again`,
        );
        this.lease = undefined;
      }
      if (this.lease === undefined) await this.register();
      else await this.publish(false);
      this.lastRenewal = Date.now();
      if (this.error !== undefined)
        this.o.log(`cluster: etcd answers again; node ${this.o.name} is registered`);
      this.error = undefined;
    } catch (err) {
      const line = errorLine(err);
      if (this.error === undefined)
        this.o.log(`cluster: ${line}; node ${this.o.name} not renewed, retrying every ${this.period()} s`);
      this.error = line;
    }
  }

  private async register(): Promise<void> {
    const lease = await this.o.etcd.grant(this.o.ttl);
    this.registeredAt = new Date().toISOString();
    this.lease = lease;
    await this.publish(true);
    this.registrations++;
    this.o.log(
      `cluster: node ${this.o.name} registered (underlay ${this.o.underlay}, lease ${lease}, ttl ${this.o.ttl} s)`,
    );
  }

  /** Writes the record when it changed since the last write (or always, for a new lease). */
  private async publish(always: boolean): Promise<void> {
    const facts = this.o.facts();
    const body = {
      name: this.o.name,
      underlay: this.o.underlay,
      vtepMac: facts.vtepMac,
      ...(facts.underlayMac ? { underlayMac: facts.underlayMac } : {}),
      blocks: facts.blocks,
      contexts: facts.contexts,
      ttl: this.o.ttl,
      version: this.o.version,
    };
    const text = JSON.stringify(body);
    if (!always && text === this.written) return;
    const record: NodeRecord = { ...body, registeredAt: this.registeredAt ?? new Date().toISOString() };
    // A failed write leaves `written` stale, so the next renewal writes again.
    this.written = undefined;
    await this.o.etcd.put(nodeKey(this.o.name), JSON.stringify(record), this.lease);
    this.written = text;
  }

  private period(): string {
    return (this.o.ttl / 3).toFixed(1).replace(/\.0$/, "");
  }
}
