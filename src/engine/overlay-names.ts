/**
 * Names across hosts (issue 20): on overlay networks a context answers by name on every host. Each engine publishes
 * its own contexts' names on cluster-scoped networks under /netctx/v1/names/NODE/ (cluster/keys.ts) and reads every
 * other node's into its DNS tables (engine/dns-feed.ts takes them as remote contexts, NAME@NODE).
 *
 * Publishing is off the create's path: a request only marks the names dirty, and a pass a few ms later compares the
 * store with what etcd holds for this node and writes the difference in one transaction per 100 keys (a burst of
 * creates shares one). Reading is level-triggered as the network mirror is: a watch on names/ and nodes/ starts a
 * full read, so a missed event costs nothing, and only nodes with a record count (a dead node's names go with its
 * lease, as its peers' routes do).
 */
import type { Etcd, PrefixWatch, Write } from "../cluster/etcd.ts";
import { NAMES, NODES, nameKey, nodeNamesPrefix, nodeOfKey } from "../cluster/keys.ts";
import type { DnsContext } from "../dns/feed.ts";
import type { Host } from "../host.ts";
import { specOf } from "../levels/driver.ts";
import { servesDns } from "./dns-feed.ts";

/** A burst of creates within this long shares one publishing pass. */
const PUBLISH_DELAY_MS = 20;
/** A failed pass (etcd away) is tried again this often. */
const RETRY_MS = 1000;
/** What was published is compared with etcd again at least this often (someone may have deleted the keys). */
const RECHECK_MS = 30_000;
/** etcd refuses a transaction of more than 128 operations (--max-txn-ops). */
const WRITES_PER_TXN = 100;

/** What is published for one context: its names and its addresses on the overlay networks that serve DNS. */
interface PublishedName {
  name: string;
  aliases: string[];
  attachments: { network: string; addresses: string[] }[];
}

export class OverlayNames {
  private remote = new Map<string, DnsContext>();
  private changed: () => void = () => {};
  private watches: PrefixWatch[] = [];
  private publishTimer: NodeJS.Timeout | undefined;
  private publishing: Promise<void> | undefined;
  private publishAgain = false;
  private reading: Promise<void> | undefined;
  private readAgain = false;
  private complaint: string | undefined;
  private stopped = false;
  /** What the last pass left in etcd, and when: a pass that would write the same skips etcd (the 1 s resync). */
  private published: { values: string; at: number } | undefined;

  constructor(
    private readonly host: Host,
    private readonly etcd: Etcd,
    private readonly node: string,
    private readonly log: (line: string) => void,
  ) {}

  start(): void {
    this.watches = [NAMES, NODES].map((p) => this.etcd.watchPrefix(p, () => this.read(), this.log));
    this.read();
    this.publishSoon();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.publishTimer);
    await Promise.all(this.watches.map((w) => w.close().catch(() => {})));
    await this.publishing;
    await this.reading;
  }

  /** Called whenever the remote names changed (the DNS feed then takes them up). */
  onChange(fn: () => void): void {
    this.changed = fn;
  }

  /** The other nodes' contexts on overlay networks, for the DNS tables. */
  remoteContexts(): DnsContext[] {
    return [...this.remote.values()];
  }

  /** Local contexts may have changed: publish soon, never on the caller's path. */
  publishSoon(delayMs = PUBLISH_DELAY_MS): void {
    if (this.stopped || this.publishTimer) return;
    this.publishTimer = setTimeout(() => {
      this.publishTimer = undefined;
      if (this.publishing) {
        this.publishAgain = true;
        return;
      }
      this.publishing = this.publish()
        .catch((err: Error) => {
          this.complain(`dns: names not published to etcd: ${err.message} (trying again)`);
          this.publishSoon(RETRY_MS);
        })
        .finally(() => {
          this.publishing = undefined;
          if (this.publishAgain) {
            this.publishAgain = false;
            this.publishSoon(0);
          }
        });
    }, delayMs);
  }

  /** This node's contexts on cluster-scoped networks that serve DNS, as they are to be published. */
  private desired(): Map<string, string> {
    const served = new Set(
      this.host.store
        .listNetworks()
        .filter((n) => n.cluster !== undefined && servesDns(n))
        .map((n) => n.name),
    );
    const out = new Map<string, string>();
    for (const record of this.host.store.listContexts()) {
      if (record.status !== "ready") continue;
      const spec = specOf(record);
      const attachments = spec.attachments
        .filter((a) => served.has(a.network))
        .map((a) => ({ network: a.network, addresses: a.addresses.map((c) => c.split("/")[0]!) }));
      if (attachments.length === 0) continue;
      const value: PublishedName = { name: record.name, aliases: spec.aliases ?? [], attachments };
      out.set(nameKey(this.node, record.name), JSON.stringify(value));
    }
    return out;
  }

  private async publish(): Promise<void> {
    const want = this.desired();
    const values = JSON.stringify([...want]);
    if (this.published?.values === values && performance.now() - this.published.at < RECHECK_MS) return;
    const have = new Map((await this.etcd.range(nodeNamesPrefix(this.node))).map((e) => [e.key, e.value]));
    const writes: Write[] = [];
    for (const [key, value] of want) if (have.get(key) !== value) writes.push({ put: key, value });
    for (const key of have.keys()) if (!want.has(key)) writes.push({ delete: key });
    for (let i = 0; i < writes.length; i += WRITES_PER_TXN)
      await this.etcd.commit([], writes.slice(i, i + WRITES_PER_TXN));
    this.published = { values, at: performance.now() };
    this.complaint = undefined;
  }

  private read(): void {
    if (this.stopped) return;
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    this.reading = this.readOnce()
      .catch((err: Error) => this.complain(`dns: remote names not read from etcd: ${err.message}`))
      .finally(() => {
        this.reading = undefined;
        if (this.readAgain) {
          this.readAgain = false;
          this.read();
        }
      });
  }

  private async readOnce(): Promise<void> {
    const [names, nodes] = await Promise.all([this.etcd.range(NAMES), this.etcd.range(NODES)]);
    const live = new Set(nodes.map((e) => nodeOfKey(e.key)));
    const next = new Map<string, DnsContext>();
    for (const e of names) {
      const [node, context] = e.key.slice(NAMES.length).split("/");
      if (!node || !context || node === this.node || !live.has(node)) continue;
      const value = parsePublished(e.value);
      if (!value) continue;
      const key = `${value.name}@${node}`;
      next.set(key, { key, ...value });
    }
    const same =
      next.size === this.remote.size &&
      [...next].every(([k, v]) => JSON.stringify(this.remote.get(k)) === JSON.stringify(v));
    this.remote = next;
    if (!same) this.changed();
  }

  private complain(line: string): void {
    if (this.complaint === line) return;
    this.complaint = line;
    this.log(line);
  }
}

/** Another node's value, checked: a key another version wrote or a hand edit is skipped, not trusted. */
function parsePublished(text: string): PublishedName | undefined {
  try {
    const v = JSON.parse(text) as Partial<PublishedName>;
    const strings = (x: unknown): x is string[] => Array.isArray(x) && x.every((s) => typeof s === "string");
    if (typeof v.name !== "string" || !strings(v.aliases) || !Array.isArray(v.attachments)) return undefined;
    if (!v.attachments.every((a) => typeof a?.network === "string" && strings(a.addresses))) return undefined;
    return { name: v.name, aliases: v.aliases, attachments: v.attachments };
  } catch {
    return undefined;
  }
}
