/**
 * The SQLite file behind the state store: opening it in the state directory, WAL, and transactions that
 * survive other netctx processes holding the write lock (SQLITE_BUSY is retried within a time budget).
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { NetctxError } from "../errors.ts";
import { sleepSync } from "../sleep-sync.ts";
import { checkNotNewer, migrate } from "./migrations.ts";

export type Sqlite = Database.Database;

export const DB_FILE = "netctx.db";
/** How long a caller waits for another process's write transaction before giving up with "busy". */
export const DEFAULT_BUSY_BUDGET_MS = 10_000;
// SQLite's own busy handler waits this long per attempt. Our loop adds backoff and a deadline around it because
// SQLite returns SQLITE_BUSY without calling the handler in some cases (another connection running WAL recovery,
// a journal-mode switch), and a bounded attempt keeps the total close to the budget.
const PER_ATTEMPT_TIMEOUT_MS = 1_000;

export interface OpenOptions {
  /** Total time a transaction may wait for the write lock; default 10 s. */
  busyBudgetMs?: number;
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("SQLITE_BUSY");
}

export class StateDb {
  private savepoints = 0;

  private constructor(
    readonly db: Sqlite,
    readonly dir: string,
    private readonly busyBudgetMs: number,
  ) {}

  static open(dir: string, options: OpenOptions = {}): StateDb {
    const budget = options.busyBudgetMs ?? DEFAULT_BUSY_BUDGET_MS;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new NetctxError("internal", `cannot create state directory ${dir}: ${(err as Error).message}`);
    }
    let db: Sqlite;
    try {
      db = new Database(join(dir, DB_FILE), { timeout: Math.min(budget, PER_ATTEMPT_TIMEOUT_MS) });
    } catch (err) {
      throw new NetctxError("internal", `cannot open state store at ${dir}: ${(err as Error).message}`);
    }
    const state = new StateDb(db, dir, budget);
    try {
      // Nothing may be written before this check: a store from a newer netctx must stay byte-for-byte intact.
      state.retryBusy(() => checkNotNewer(db, dir));
      state.retryBusy(() => {
        const mode = db.pragma("journal_mode = WAL", { simple: true });
        // Switching to WAL needs an exclusive lock; SQLite reports the old mode instead of failing when it can't.
        if (mode !== "wal")
          throw Object.assign(new Error("journal mode still " + String(mode)), { code: "SQLITE_BUSY" });
      });
      // In WAL, NORMAL loses at most the last commits on power loss, never consistency.
      db.pragma("synchronous = NORMAL");
      db.pragma("foreign_keys = ON");
      migrate(db, dir, (fn) => state.transaction(fn));
    } catch (err) {
      db.close();
      if ((err as { code?: unknown }).code === "SQLITE_NOTADB")
        throw new NetctxError("internal", `state store at ${dir}: ${DB_FILE} is not a SQLite database`);
      throw err;
    }
    return state;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** Runs fn until it stops failing with SQLITE_BUSY or the budget is spent. Only for steps safe to repeat. */
  retryBusy<T>(fn: () => T): T {
    const deadline = Date.now() + this.busyBudgetMs;
    let backoff = 5;
    for (;;) {
      try {
        return fn();
      } catch (err) {
        if (!isBusy(err)) throw err;
        const left = deadline - Date.now();
        if (left <= 0)
          throw new NetctxError(
            "busy",
            `state store at ${this.dir} stayed locked for ${(this.busyBudgetMs / 1000).toFixed(1)} s by another netctx process; try again`,
          );
        // Jitter keeps a crowd of waiting processes from retrying in lockstep.
        sleepSync(Math.min(left, backoff + Math.random() * backoff));
        backoff = Math.min(backoff * 2, 200);
      }
    }
  }

  /**
   * BEGIN IMMEDIATE takes the write lock up front, so a read-then-write (IPAM) cannot be overtaken by another
   * process between its read and its write. Nested calls join the outer transaction through a savepoint: they
   * commit with it, but a nested failure undoes only its own part.
   */
  transaction<T>(fn: () => T): T {
    if (this.db.inTransaction) return this.nested(fn);
    this.retryBusy(() => this.db.exec("BEGIN IMMEDIATE"));
    try {
      const result = syncResult(fn());
      // A busy COMMIT leaves the transaction open, so it can be retried as is.
      this.retryBusy(() => this.db.exec("COMMIT"));
      return result;
    } catch (err) {
      if (this.db.inTransaction) this.db.exec("ROLLBACK");
      throw err;
    }
  }

  private nested<T>(fn: () => T): T {
    const name = `netctx_sp${++this.savepoints}`;
    this.db.exec(`SAVEPOINT ${name}`);
    try {
      const result = syncResult(fn());
      this.db.exec(`RELEASE ${name}`);
      return result;
    } catch (err) {
      if (this.db.inTransaction) {
        this.db.exec(`ROLLBACK TO ${name}`);
        this.db.exec(`RELEASE ${name}`);
      }
      throw err;
    } finally {
      this.savepoints--;
    }
  }
}

function syncResult<T>(result: T): T {
  // An async fn would run its awaited part after COMMIT, outside the transaction.
  if (
    result !== null &&
    typeof result === "object" &&
    typeof (result as { then?: unknown }).then === "function"
  )
    throw new NetctxError(
      "internal",
      "a state transaction must be synchronous (the function returned a promise)",
    );
  return result;
}
