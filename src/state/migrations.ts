/**
 * The store's schema, versioned through PRAGMA user_version. Each migration runs once, in its own immediate
 * transaction, and a store written by a newer netctx is refused untouched rather than "repaired" by older code.
 *
 * Addresses are 128-bit, wider than SQLite's INTEGER, so every address also has a `*_key` column: 32 lowercase
 * hex digits, whose text order is the numeric order (v4 keys sort below every v6 key, and never meet them
 * in one subnet anyway).
 */
import type Database from "better-sqlite3";
import { NetctxError } from "../errors.ts";

interface Migration {
  version: number;
  up(db: Database.Database): void;
}

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    up(db) {
      db.exec(`
        CREATE TABLE networks (
          name       TEXT PRIMARY KEY,
          driver     TEXT NOT NULL,
          nat        INTEGER NOT NULL CHECK (nat IN (0, 1)),
          internal   INTEGER NOT NULL CHECK (internal IN (0, 1)),
          mtu        INTEGER NOT NULL,
          options    TEXT NOT NULL CHECK (json_valid(options)),
          created_at TEXT NOT NULL
        ) STRICT;

        CREATE TABLE subnets (
          network   TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
          position  INTEGER NOT NULL,
          cidr      TEXT NOT NULL,
          family    INTEGER NOT NULL CHECK (family IN (4, 6)),
          first_key TEXT NOT NULL,
          last_key  TEXT NOT NULL,
          gateway   TEXT,
          -- Every address from the first usable one up to (not including) free_hint is taken: automatic
          -- allocation starts there, so filling a subnet costs O(1) per address, not O(leases).
          free_hint TEXT,
          PRIMARY KEY (network, cidr)
        ) STRICT;
        CREATE INDEX subnets_by_range ON subnets (family, first_key);

        CREATE TABLE contexts (
          name       TEXT PRIMARY KEY,
          level      TEXT NOT NULL CHECK (level IN ('l2', 'l3', 'socket')),
          status     TEXT NOT NULL CHECK (status IN ('creating', 'ready', 'removing')),
          spec       TEXT NOT NULL CHECK (json_valid(spec)),
          created_at TEXT NOT NULL
        ) STRICT;

        -- owner is deliberately not a foreign key: the engine allocates addresses before the context row
        -- exists (both in one transaction), and CNI owners are container ids, not contexts.
        CREATE TABLE leases (
          network    TEXT NOT NULL,
          subnet     TEXT NOT NULL,
          address    TEXT NOT NULL,
          addr_key   TEXT NOT NULL,
          owner      TEXT NOT NULL,
          created_at TEXT NOT NULL,
          PRIMARY KEY (network, addr_key),
          UNIQUE (network, address),
          FOREIGN KEY (network, subnet) REFERENCES subnets (network, cidr)
        ) STRICT;
        CREATE INDEX leases_by_subnet ON leases (network, subnet, addr_key);
        CREATE INDEX leases_by_owner ON leases (owner, network);

        -- A freed address below the hint makes it the lowest free one again.
        CREATE TRIGGER leases_release AFTER DELETE ON leases BEGIN
          UPDATE subnets SET free_hint = OLD.addr_key
           WHERE network = OLD.network AND cidr = OLD.subnet AND free_hint > OLD.addr_key;
        END;
      `);
    },
  },
  {
    // The in-progress mark of a create or rm (model/records.ts OpMark) was a key "op" inside the options or spec
    // JSON; it gets columns of its own, so records hold only what was asked for and the mark is typed.
    version: 2,
    up(db) {
      for (const [table, json] of [
        ["networks", "options"],
        ["contexts", "spec"],
      ] as const) {
        db.exec(`
          ALTER TABLE ${table} ADD COLUMN op TEXT CHECK (op IN ('create', 'remove'));
          ALTER TABLE ${table} ADD COLUMN op_pid INTEGER CHECK ((op_pid IS NULL) = (op IS NULL) AND op_pid > 0);
          ALTER TABLE ${table} ADD COLUMN op_start TEXT CHECK ((op_start IS NULL) = (op IS NULL));
          UPDATE ${table}
             SET op = json_extract(${json}, '$.op.op'),
                 op_pid = json_extract(${json}, '$.op.pid'),
                 op_start = CASE json_type(${json}, '$.op.start')
                              WHEN 'text' THEN json_extract(${json}, '$.op.start') ELSE '' END
           WHERE json_extract(${json}, '$.op.op') IN ('create', 'remove')
             AND json_type(${json}, '$.op.pid') = 'integer' AND json_extract(${json}, '$.op.pid') > 0;
          -- A mark no netctx could have written meant "no mark" to the code that read it: it goes.
          UPDATE ${table} SET ${json} = json_remove(${json}, '$.op') WHERE json_type(${json}, '$.op') IS NOT NULL;
        `);
      }
    },
  },
  {
    // The apply scene that made a network (model/records.ts NetworkRecord.scene), so `apply --prune` removes only
    // what an apply of the same scene made. Networks made before this are taken as made by hand: never pruned.
    version: 3,
    up(db) {
      db.exec(`ALTER TABLE networks ADD COLUMN scene TEXT CHECK (scene IS NULL OR length(scene) > 0);`);
    },
  },
  {
    // A context's op mark may also be a `network connect` under way (model/records.ts), so gc can roll back one whose
    // process died. SQLite cannot change a column's CHECK: the table is copied into a new one. Nothing refers to it
    // (lease owners are deliberately no foreign key), and it has no index or trigger of its own.
    version: 4,
    up(db) {
      db.exec(`
        CREATE TABLE contexts_v4 (
          name       TEXT PRIMARY KEY,
          level      TEXT NOT NULL CHECK (level IN ('l2', 'l3', 'socket')),
          status     TEXT NOT NULL CHECK (status IN ('creating', 'ready', 'removing')),
          spec       TEXT NOT NULL CHECK (json_valid(spec)),
          created_at TEXT NOT NULL,
          op         TEXT CHECK (op IN ('create', 'remove', 'connect')),
          op_pid     INTEGER CHECK ((op_pid IS NULL) = (op IS NULL) AND op_pid > 0),
          op_start   TEXT CHECK ((op_start IS NULL) = (op IS NULL))
        ) STRICT;
        INSERT INTO contexts_v4 (name, level, status, spec, created_at, op, op_pid, op_start)
          SELECT name, level, status, spec, created_at, op, op_pid, op_start FROM contexts;
        DROP TABLE contexts;
        ALTER TABLE contexts_v4 RENAME TO contexts;
      `);
    },
  },
  {
    // Networks mirrored from the cluster (issue 18, model/records.ts ClusterScope): their VNI, the node's name and
    // the address blocks this node holds, which IPAM allocates inside (state/ipam.ts). NULL: a local network.
    version: 5,
    up(db) {
      db.exec(`ALTER TABLE networks ADD COLUMN cluster TEXT CHECK (cluster IS NULL OR json_valid(cluster));`);
    },
  },
  {
    // Policies (issue 19, model/policy.ts): who may reach whom. The selectors and ports are kept as the record's
    // JSON; the scene, like a network's, tells `apply --prune` which policies are its own.
    version: 6,
    up(db) {
      db.exec(`
        CREATE TABLE policies (
          name       TEXT PRIMARY KEY,
          spec       TEXT NOT NULL CHECK (json_valid(spec)),
          scene      TEXT CHECK (scene IS NULL OR length(scene) > 0),
          created_at TEXT NOT NULL
        ) STRICT;
      `);
    },
  },
];

export const SCHEMA_VERSION = MIGRATIONS.length;

export function schemaVersion(db: Database.Database): number {
  return Number(db.pragma("user_version", { simple: true }));
}

function newerError(dir: string, version: number): NetctxError {
  return new NetctxError(
    "internal",
    `state store at ${dir} has schema version ${version}; this netctx knows up to ${SCHEMA_VERSION}: upgrade netctx`,
  );
}

/** Reads only: safe on a store we must not touch. */
export function checkNotNewer(db: Database.Database, dir: string): void {
  const version = schemaVersion(db);
  if (version > SCHEMA_VERSION) throw newerError(dir, version);
}

/** Brings the schema up to `target` (tests stop early to make a store as an older netctx left it). */
export function migrate(
  db: Database.Database,
  dir: string,
  transaction: (fn: () => void) => void,
  target = SCHEMA_VERSION,
): void {
  for (const m of MIGRATIONS) {
    if (m.version > target) break;
    if (schemaVersion(db) >= m.version) continue;
    transaction(() => {
      // Re-read under the write lock: another process may have migrated (or upgraded) since the check above.
      const current = schemaVersion(db);
      if (current > SCHEMA_VERSION) throw newerError(dir, current);
      if (current >= m.version) return;
      m.up(db);
      db.pragma(`user_version = ${m.version}`);
    });
  }
}
