/**
 * The state store (state-store.ts) in one SQLite file, shared safely by every netctx process on the host. Every
 * write runs in an immediate transaction (see db.ts). Records are checked against model/records.ts on the way in
 * and on the way out; beyond that, the store keeps its own invariants (canonical subnets, no overlaps, no double
 * leases).
 */
import type { z } from "zod";
import { conflict, invalid, NetctxError, notFound } from "../errors.ts";
import { ContextSpecSchema } from "../model/context-spec.ts";
import { vethOwnerCandidates } from "../model/names.ts";
import { type PolicyRecord, PolicyRecordSchema } from "../model/policy.ts";
import { MAX_POLICIES } from "../model/policy-tables.ts";
import {
  CONTEXT_STATUSES,
  type ContextRecord,
  ContextRecordSchema,
  type Lease,
  type NetworkRecord,
  NetworkRecordSchema,
  type OpMark,
  type SubnetRecord,
} from "../model/records.ts";
import { firstProblem, LEVELS } from "../model/schemas.ts";
import { type Cidr, cidrContains, cidrsOverlap, lastAddress, parseIp, parseSubnet } from "../net/cidr.ts";
import { type OpenOptions, StateDb } from "./db.ts";
import { addrKey, Ipam, usableRange } from "./ipam.ts";
import type { StateStore } from "./state-store.ts";
import { storeIdOf } from "./store-id.ts";

export type { OpenOptions };

/** The op mark's columns, NULL together when no operation is under way. */
interface OpColumns {
  op: string | null;
  op_pid: number | null;
  op_start: string | null;
}

interface NetworkRow extends OpColumns {
  name: string;
  driver: string;
  nat: number;
  internal: number;
  mtu: number;
  options: string;
  scene: string | null;
  cluster: string | null;
  created_at: string;
}

interface SubnetRow {
  network: string;
  cidr: string;
  gateway: string | null;
}

interface ContextRow extends OpColumns {
  name: string;
  level: string;
  status: string;
  spec: string;
  created_at: string;
}

interface PolicyRow {
  name: string;
  spec: string;
  scene: string | null;
  created_at: string;
}

interface LeaseRow {
  network: string;
  subnet: string;
  address: string;
  owner: string;
}

/** A subnet as stored: canonical text, key range for overlap queries, canonical gateway. */
interface NormalSubnet {
  cidr: Cidr;
  text: string;
  gateway: string | null;
}

function toJson(field: string, value: Record<string, unknown>): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw invalid(field, `cannot be stored as JSON: ${(err as Error).message.split("\n")[0]}`);
  }
  if (text === undefined || !text.startsWith("{")) throw invalid(field, "must be a JSON object");
  return text;
}

function normalizeSubnets(network: string, subnets: readonly SubnetRecord[]): NormalSubnet[] {
  const out: NormalSubnet[] = [];
  for (const s of subnets) {
    const cidr = parseSubnet(s.cidr, "subnet");
    const text = cidr.text;
    let gateway: string | null = null;
    if (s.gateway !== undefined) {
      const gw = parseIp(s.gateway, "gateway");
      if (!cidrContains(cidr, gw.family, gw.addr))
        throw invalid("gateway", `${gw.text} is outside subnet ${text}`);
      const { first, last } = usableRange(cidr);
      if (gw.addr < first) throw invalid("gateway", `${gw.text} is the network address of ${text}`);
      if (gw.addr > last) throw invalid("gateway", `${gw.text} is the broadcast address of ${text}`);
      gateway = gw.text;
    }
    const clash = out.find((o) => cidrsOverlap(o.cidr, cidr));
    if (clash)
      throw invalid(
        "subnet",
        clash.text === text
          ? `${text} is given twice for network "${network}"`
          : `${text} overlaps ${clash.text}, also given for network "${network}"`,
      );
    out.push({ cidr, text, gateway });
  }
  return out;
}

function prefixOf(subnet: string): number {
  return Number(subnet.slice(subnet.indexOf("/") + 1));
}

function toLease(row: LeaseRow): Lease {
  return {
    network: row.network,
    subnet: row.subnet,
    address: row.address,
    prefix: prefixOf(row.subnet),
    owner: row.owner,
  };
}

/** The op columns as the record's `op`, for the schema to check. */
function opOf(row: OpColumns): object | undefined {
  return row.op === null ? undefined : { op: row.op, pid: row.op_pid, start: row.op_start };
}

function opParams(op: OpMark | undefined): OpColumns {
  return op ? { op: op.op, op_pid: op.pid, op_start: op.start } : { op: null, op_pid: null, op_start: null };
}

function networkFromRow(row: NetworkRow, subnets: readonly SubnetRow[]): unknown {
  const op = opOf(row);
  return {
    name: row.name,
    driver: row.driver,
    subnets: subnets.map((s) =>
      s.gateway === null ? { cidr: s.cidr } : { cidr: s.cidr, gateway: s.gateway },
    ),
    nat: row.nat === 1,
    internal: row.internal === 1,
    mtu: row.mtu,
    // The column's CHECK holds it to valid JSON; the schema checks what the JSON holds.
    options: JSON.parse(row.options) as unknown,
    ...(op ? { op } : {}),
    ...(row.scene !== null ? { scene: row.scene } : {}),
    ...(row.cluster !== null ? { cluster: JSON.parse(row.cluster) as unknown } : {}),
    createdAt: row.created_at,
  };
}

function contextFromRow(row: ContextRow): unknown {
  const op = opOf(row);
  return {
    name: row.name,
    level: row.level,
    status: row.status,
    spec: JSON.parse(row.spec) as unknown,
    ...(op ? { op } : {}),
    createdAt: row.created_at,
  };
}

function checkContext(c: ContextRecord): void {
  if (c.name.length === 0) throw invalid("name", "must not be empty");
  if (!(LEVELS as readonly string[]).includes(c.level))
    throw invalid("level", `unknown level "${c.level}" (known: ${LEVELS.join(", ")})`);
  if (!(CONTEXT_STATUSES as readonly string[]).includes(c.status))
    throw invalid("status", `unknown status "${c.status}"`);
  const spec = ContextSpecSchema.safeParse(c.spec);
  if (!spec.success) {
    const { field, message } = firstProblem(spec.error, "spec");
    throw invalid(field, message);
  }
}

function checkNetwork(n: NetworkRecord): void {
  if (n.name.length === 0) throw invalid("name", "must not be empty");
  if (!Number.isInteger(n.mtu) || n.mtu < 0) throw invalid("mtu", `${n.mtu} is not a valid MTU`);
}

export class Store implements StateStore {
  readonly dir: string;
  private readonly state: StateDb;
  private readonly ipam: Ipam;
  private readonly q;
  /** Writes of networks and policies by this store: see policyInputsRevision. */
  private policyInputWrites = 0;

  private constructor(state: StateDb) {
    this.state = state;
    this.dir = state.dir;
    this.ipam = new Ipam(state.db);
    const db = state.db;
    this.q = {
      network: db.prepare<[string], NetworkRow>(`SELECT * FROM networks WHERE name = ?`),
      networks: db.prepare<[], NetworkRow>(`SELECT * FROM networks ORDER BY name`),
      subnetsOf: db.prepare<[string], SubnetRow>(
        `SELECT network, cidr, gateway FROM subnets WHERE network = ? ORDER BY position`,
      ),
      allSubnets: db.prepare<[], SubnetRow>(
        `SELECT network, cidr, gateway FROM subnets ORDER BY network, position`,
      ),
      insertNetwork: db.prepare(
        `INSERT INTO networks (name, driver, nat, internal, mtu, options, op, op_pid, op_start, scene, cluster, created_at)
            VALUES (@name, @driver, @nat, @internal, @mtu, @options, @op, @op_pid, @op_start, @scene, @cluster, @created_at)`,
      ),
      updateNetwork: db.prepare(
        `UPDATE networks SET driver = @driver, nat = @nat, internal = @internal, mtu = @mtu,
            options = @options, op = @op, op_pid = @op_pid, op_start = @op_start, scene = @scene,
            cluster = @cluster, created_at = @created_at WHERE name = @name`,
      ),
      deleteNetwork: db.prepare<[string]>(`DELETE FROM networks WHERE name = ?`),
      insertSubnet: db.prepare(
        `INSERT INTO subnets (network, position, cidr, family, first_key, last_key, gateway)
            VALUES (@network, @position, @cidr, @family, @first_key, @last_key, @gateway)`,
      ),
      updateSubnet: db.prepare(
        `UPDATE subnets SET position = @position, gateway = @gateway,
            free_hint = CASE WHEN gateway IS @gateway THEN free_hint ELSE NULL END
            WHERE network = @network AND cidr = @cidr`,
      ),
      deleteSubnet: db.prepare<[string, string]>(`DELETE FROM subnets WHERE network = ? AND cidr = ?`),
      overlapping: db.prepare<[number, string, string, string], { network: string; cidr: string }>(
        `SELECT network, cidr FROM subnets
            WHERE family = ? AND first_key <= ? AND last_key >= ? AND network <> ? LIMIT 1`,
      ),
      leaseOwners: db
        .prepare<[string], string>(`SELECT DISTINCT owner FROM leases WHERE network = ? ORDER BY owner`)
        .pluck(),
      subnetLeaseCount: db
        .prepare<[string, string], number>(`SELECT count(*) FROM leases WHERE network = ? AND subnet = ?`)
        .pluck(),
      leasesBetween: db
        .prepare<[string, string, string], number>(
          `SELECT count(*) FROM leases WHERE network = ? AND addr_key >= ? AND addr_key <= ?`,
        )
        .pluck(),
      leaseAt: db
        .prepare<[string, string], string>(`SELECT owner FROM leases WHERE network = ? AND addr_key = ?`)
        .pluck(),
      context: db.prepare<[string], ContextRow>(`SELECT * FROM contexts WHERE name = ?`),
      contexts: db.prepare<[], ContextRow>(`SELECT * FROM contexts ORDER BY name`),
      totalChanges: db.prepare<[], number>(`SELECT total_changes()`).pluck(),
      // Prepared once: the engine asks it many times a second while requests come (db.pragma() prepares each call).
      dataVersion: db.prepare<[], number>("PRAGMA data_version").pluck(),
      contextFingerprints: db.prepare<[], { name: string; fp: string }>(
        // created_at: a context removed and made again with the same spec is another record (another cgroup).
        `SELECT name, status || ' ' || created_at || ' ' || spec AS fp FROM contexts ORDER BY name`,
      ),
      contextTables: db
        .prepare<[], number>(
          `SELECT table_id FROM (SELECT json_extract(spec, '$.table') AS table_id FROM contexts) WHERE table_id IS NOT NULL`,
        )
        .pluck(),
      hostIfnameHolders: db
        .prepare<[string, string], string>(
          `SELECT DISTINCT c.name FROM contexts c, json_each(c.spec, '$.attachments') a
              WHERE c.name IN (SELECT value FROM json_each(?)) AND json_extract(a.value, '$.hostIfname') = ?
              ORDER BY c.name`,
        )
        .pluck(),
      insertContext: db.prepare(
        `INSERT INTO contexts (name, level, status, spec, op, op_pid, op_start, created_at)
            VALUES (@name, @level, @status, @spec, @op, @op_pid, @op_start, @created_at)`,
      ),
      updateContext: db.prepare(
        `UPDATE contexts SET level = @level, status = @status, spec = @spec, op = @op, op_pid = @op_pid,
            op_start = @op_start, created_at = @created_at WHERE name = @name`,
      ),
      deleteContext: db.prepare<[string]>(`DELETE FROM contexts WHERE name = ?`),
      // better-sqlite3 counts a numbered parameter once per use: named ones bind each value once.
      leases: db.prepare<[{ network: string | null; owner: string | null }], LeaseRow>(
        `SELECT l.network, l.subnet, l.address, l.owner FROM leases l
            JOIN subnets s ON s.network = l.network AND s.cidr = l.subnet
            WHERE (@network IS NULL OR l.network = @network) AND (@owner IS NULL OR l.owner = @owner)
            ORDER BY l.network, l.owner, s.position, l.addr_key`,
      ),
      release: db.prepare<[string, string]>(`DELETE FROM leases WHERE network = ? AND owner = ?`),
      releaseAll: db.prepare<[string]>(`DELETE FROM leases WHERE owner = ?`),
      policy: db.prepare<[string], PolicyRow>(`SELECT * FROM policies WHERE name = ?`),
      policies: db.prepare<[], PolicyRow>(`SELECT * FROM policies ORDER BY name`),
      policyCount: db.prepare<[], number>(`SELECT count(*) FROM policies`).pluck(),
      insertPolicy: db.prepare(
        `INSERT INTO policies (name, spec, scene, created_at) VALUES (@name, @spec, @scene, @created_at)`,
      ),
      deletePolicy: db.prepare<[string]>(`DELETE FROM policies WHERE name = ?`),
      // JSON true reads as 1 in SQLite.
      policyActive: db
        .prepare<[], number>(
          `SELECT EXISTS (SELECT 1 FROM policies)
               OR EXISTS (SELECT 1 FROM networks
                           WHERE json_extract(options, '$.isolate') = 1 OR json_extract(options, '$.defaultDeny') = 1)`,
        )
        .pluck(),
    };
  }

  /** Opens (creating if needed) the store in `dir` (config.stateDir). */
  private idText: string | undefined;

  get id(): string {
    this.idText ??= storeIdOf(this.dir);
    return this.idText;
  }

  static open(dir: string, options: OpenOptions = {}): Store {
    return new Store(StateDb.open(dir, options));
  }

  close(): void {
    this.state.close();
  }

  transaction<T>(fn: () => T): T {
    return this.state.transaction(fn);
  }

  /** WAL readers do not wait for writers, but can still meet SQLITE_BUSY while another process recovers the WAL. */
  private read<T>(fn: () => T): T {
    return this.state.retryBusy(fn);
  }

  /** A row as a record, or an error naming the record and the field: a hand-edited or corrupt row stops here. */
  private loaded<S extends z.ZodType>(schema: S, what: string, name: string, value: unknown): z.infer<S> {
    const result = schema.safeParse(value);
    if (result.success) return result.data;
    const { field, message } = firstProblem(result.error);
    throw new NetctxError(
      "internal",
      `state store at ${this.dir}: ${what} "${name}" is malformed: ${field || what}: ${message}`,
      field || what,
    );
  }

  private toNetwork(row: NetworkRow, subnets: readonly SubnetRow[]): NetworkRecord {
    return this.loaded(NetworkRecordSchema, "network", row.name, networkFromRow(row, subnets));
  }

  private toContext(row: ContextRow): ContextRecord {
    return this.loaded(ContextRecordSchema, "context", row.name, contextFromRow(row));
  }

  // ---- networks

  insertNetwork(n: NetworkRecord): void {
    this.policyInputWrites++;
    checkNetwork(n);
    const subnets = normalizeSubnets(n.name, n.subnets);
    const options = toJson("options", n.options);
    this.transaction(() => {
      if (this.q.network.get(n.name)) throw conflict("name", `network "${n.name}" already exists`);
      this.checkOverlaps(n.name, subnets);
      this.q.insertNetwork.run(this.networkParams(n, options, n.createdAt ?? new Date().toISOString()));
      subnets.forEach((s, position) => {
        this.q.insertSubnet.run(subnetParams(n.name, position, s));
      });
    });
  }

  getNetwork(name: string): NetworkRecord | undefined {
    return this.read(() => {
      const row = this.q.network.get(name);
      return row && this.toNetwork(row, this.q.subnetsOf.all(name));
    });
  }

  listNetworks(): NetworkRecord[] {
    return this.read(() => this.listNetworksNow());
  }

  private listNetworksNow(): NetworkRecord[] {
    const subnets = new Map<string, SubnetRow[]>();
    for (const s of this.q.allSubnets.all()) {
      const list = subnets.get(s.network) ?? [];
      list.push(s);
      subnets.set(s.network, list);
    }
    return this.q.networks.all().map((row) => this.toNetwork(row, subnets.get(row.name) ?? []));
  }

  /**
   * Replaces a network's record. Subnets may be added; a subnet with leases may not be removed, and a new
   * gateway may not be an address somebody holds.
   */
  updateNetwork(n: NetworkRecord): void {
    this.policyInputWrites++;
    checkNetwork(n);
    const subnets = normalizeSubnets(n.name, n.subnets);
    const options = toJson("options", n.options);
    this.transaction(() => {
      const old = this.q.network.get(n.name);
      if (!old) throw notFound("network", n.name);
      this.checkOverlaps(n.name, subnets);
      this.checkDroppedBlocks(n, old.cluster);
      const oldSubnets = this.q.subnetsOf.all(n.name);
      const keep = new Set(subnets.map((s) => s.text));
      for (const o of oldSubnets) {
        if (keep.has(o.cidr)) continue;
        const count = this.q.subnetLeaseCount.get(n.name, o.cidr) ?? 0;
        if (count > 0)
          throw conflict(
            "subnet",
            `cannot remove ${o.cidr} from network "${n.name}": ${count} address${count === 1 ? " is" : "es are"} leased in it`,
          );
        this.q.deleteSubnet.run(n.name, o.cidr);
      }
      const existing = new Set(oldSubnets.map((o) => o.cidr));
      subnets.forEach((s, position) => {
        if (s.gateway !== null) {
          const holder = this.q.leaseAt.get(n.name, addrKey(parseIp(s.gateway, "gateway").addr));
          if (holder !== undefined)
            throw conflict("gateway", `${s.gateway} is already in use by "${holder}"`);
        }
        const params = subnetParams(n.name, position, s);
        if (existing.has(s.text)) this.q.updateSubnet.run(params);
        else this.q.insertSubnet.run(params);
      });
      this.q.updateNetwork.run(this.networkParams(n, options, n.createdAt ?? old.created_at));
    });
  }

  /** Refuses while leases exist on the network: their owners' kernel objects still use those addresses. */
  deleteNetwork(name: string): boolean {
    this.policyInputWrites++;
    return this.transaction(() => {
      const owners = this.q.leaseOwners.all(name);
      if (owners.length > 0) {
        const shown = owners.slice(0, 5).map((o) => `"${o}"`);
        if (owners.length > 5) shown.push(`and ${owners.length - 5} more`);
        throw conflict("network", `network "${name}" is still used by ${shown.join(", ")}`);
      }
      return this.q.deleteNetwork.run(name).changes > 0;
    });
  }

  /** A block this node gives back must hold no lease: its addresses would be handed out by another node. */
  private checkDroppedBlocks(n: NetworkRecord, oldCluster: string | null): void {
    if (oldCluster === null) return;
    const old = (JSON.parse(oldCluster) as { blocks?: { cidr: string }[] }).blocks ?? [];
    const keep = new Set((n.cluster?.blocks ?? []).map((b) => b.cidr));
    for (const b of old) {
      if (keep.has(b.cidr)) continue;
      const c = parseSubnet(b.cidr, "block");
      const count = this.q.leasesBetween.get(n.name, addrKey(c.network), addrKey(lastAddress(c))) ?? 0;
      if (count > 0)
        throw conflict(
          "block",
          `cannot give back block ${b.cidr} of network "${n.name}": ${count} address${count === 1 ? " is" : "es are"} leased in it`,
        );
    }
  }

  private networkParams(n: NetworkRecord, options: string, createdAt: string) {
    return {
      name: n.name,
      driver: n.driver,
      nat: n.nat ? 1 : 0,
      internal: n.internal ? 1 : 0,
      mtu: n.mtu,
      options,
      ...opParams(n.op),
      scene: n.scene ?? null,
      cluster: n.cluster ? JSON.stringify(n.cluster) : null,
      created_at: createdAt,
    };
  }

  private checkOverlaps(name: string, subnets: readonly NormalSubnet[]): void {
    for (const s of subnets) {
      const hit = this.q.overlapping.get(
        s.cidr.family,
        addrKey(lastAddress(s.cidr)),
        addrKey(s.cidr.network),
        name,
      );
      if (hit) throw conflict("subnet", `${s.text} overlaps network "${hit.network}" (${hit.cidr})`);
    }
  }

  // ---- contexts

  insertContext(c: ContextRecord): void {
    checkContext(c);
    const spec = toJson("spec", c.spec);
    this.transaction(() => {
      if (this.q.context.get(c.name)) throw conflict("name", `context "${c.name}" already exists`);
      this.q.insertContext.run({
        ...contextParams(c, spec),
        created_at: c.createdAt ?? new Date().toISOString(),
      });
    });
  }

  getContext(name: string): ContextRecord | undefined {
    return this.read(() => {
      const row = this.q.context.get(name);
      return row && this.toContext(row);
    });
  }

  listContexts(): ContextRecord[] {
    return this.read(() => this.q.contexts.all().map((row) => this.toContext(row)));
  }

  contextFingerprints(): Map<string, string> {
    return this.read(() => new Map(this.q.contextFingerprints.all().map((r) => [r.name, r.fp])));
  }

  /** The routing tables of l3 contexts, read in SQL: parsing every record would cost O(contexts) per apply batch. */
  contextTables(): number[] {
    return this.read(() => this.q.contextTables.all());
  }

  /** The contexts whose attachments name `ifname` as their host-side link, read in SQL (see contextTables). */
  hostIfnameHolders(ifname: string): string[] {
    // Only contexts that can hold the name are read (by primary key): scanning every attachment made each create
    // O(contexts), and setup time grow with the population.
    const candidates = vethOwnerCandidates(ifname);
    if (candidates.length === 0) return [];
    return this.read(() => this.q.hostIfnameHolders.all(JSON.stringify(candidates), ifname));
  }

  updateContext(c: ContextRecord): void {
    checkContext(c);
    const spec = toJson("spec", c.spec);
    this.transaction(() => {
      const old = this.q.context.get(c.name);
      if (!old) throw notFound("context", c.name);
      this.q.updateContext.run({ ...contextParams(c, spec), created_at: c.createdAt ?? old.created_at });
    });
  }

  deleteContext(name: string): boolean {
    return this.transaction(() => this.q.deleteContext.run(name).changes > 0);
  }

  // ---- leases

  /** One address per subnet of `network`; see Ipam. All or nothing, also when joined to an outer transaction. */
  allocate(network: string, owner: string, requested: string[] = []): Lease[] {
    return this.transaction(() => {
      if (!this.q.network.get(network)) throw notFound("network", network);
      return this.ipam.allocate(network, owner, requested);
    });
  }

  release(network: string, owner: string): number {
    return this.transaction(() => this.q.release.run(network, owner).changes);
  }

  releaseAll(owner: string): number {
    return this.transaction(() => this.q.releaseAll.run(owner).changes);
  }

  // ---- policies

  /** Refuses a name in use, and a policy beyond MAX_POLICIES (each has a bit of the data path's tables). */
  insertPolicy(p: PolicyRecord): void {
    this.policyInputWrites++;
    const checked = PolicyRecordSchema.safeParse(p);
    if (!checked.success) {
      const { field, message } = firstProblem(checked.error);
      throw invalid(field || "policy", message);
    }
    const { name, scene, createdAt, ...spec } = p;
    this.transaction(() => {
      if (this.q.policy.get(name)) throw conflict("name", `policy "${name}" already exists`);
      const count = this.q.policyCount.get() ?? 0;
      if (count >= MAX_POLICIES)
        throw new NetctxError(
          "exhausted",
          `name: there are already ${count} policies, the most the data path's tables hold (${MAX_POLICIES}); remove one first`,
          "name",
        );
      this.q.insertPolicy.run({
        name,
        spec: JSON.stringify(spec),
        scene: scene ?? null,
        created_at: createdAt ?? new Date().toISOString(),
      });
    });
  }

  getPolicy(name: string): PolicyRecord | undefined {
    return this.read(() => {
      const row = this.q.policy.get(name);
      return row && this.toPolicy(row);
    });
  }

  listPolicies(): PolicyRecord[] {
    return this.read(() => this.q.policies.all().map((row) => this.toPolicy(row)));
  }

  deletePolicy(name: string): boolean {
    this.policyInputWrites++;
    return this.transaction(() => this.q.deletePolicy.run(name).changes > 0);
  }

  /** Whether any policy exists or any network isolates or denies by default, in one query (every create asks). */
  policyActive(): boolean {
    return this.read(() => this.q.policyActive.get() === 1);
  }

  /**
   * A revision of the networks and policies: it changes with every write of one by this store (counted) or any commit
   * by another process (data_version), so records read under one revision stay true while it holds. Undefined inside
   * a transaction, whose reads may yet be rolled back.
   */
  policyInputsRevision(): string | undefined {
    if (this.state.db.inTransaction) return undefined;
    return `${this.foreignWrites()}:${this.policyInputWrites}`;
  }

  /** data_version for other connections' commits, total_changes() for this one's rows written. */
  recordsRevision(): string | undefined {
    if (this.state.db.inTransaction) return undefined;
    return `${this.foreignWrites()}:${this.q.totalChanges.get()}`;
  }

  /** SQLite's data_version: it changes when another connection commits, never for this one's own writes. */
  foreignWrites(): number {
    return this.read(() => Number(this.q.dataVersion.get()));
  }

  private toPolicy(row: PolicyRow): PolicyRecord {
    const value = {
      name: row.name,
      ...(JSON.parse(row.spec) as object),
      ...(row.scene !== null ? { scene: row.scene } : {}),
      createdAt: row.created_at,
    };
    return this.loaded(PolicyRecordSchema, "policy", row.name, value);
  }

  leases(filter: { network?: string; owner?: string } = {}): Lease[] {
    return this.read(() =>
      this.q.leases.all({ network: filter.network ?? null, owner: filter.owner ?? null }).map(toLease),
    );
  }
}

function contextParams(c: ContextRecord, spec: string) {
  return { name: c.name, level: c.level, status: c.status, spec, ...opParams(c.op) };
}

function subnetParams(network: string, position: number, s: NormalSubnet) {
  return {
    network,
    position,
    cidr: s.text,
    family: s.cidr.family,
    first_key: addrKey(s.cidr.network),
    last_key: addrKey(lastAddress(s.cidr)),
    gateway: s.gateway,
  };
}
