/**
 * A named lock between netctx processes, held in a SQLite file beside the state (the write lock of an empty
 * database: released by the kernel if its holder dies, like a flock, which Node lacks). Firewall changes take this
 * instead of the state store's write lock: they fork `nft` and take tens of milliseconds, and holding the store
 * meanwhile made a crowd of parallel creates wait on each other's firewall work for their address allocation.
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import { NetctxError } from "../errors.ts";

/** Bounded: a holder can only be another netctx doing one firewall change, so this is generous, not endless. */
const LOCK_TIMEOUT_MS = 60_000;

export class ProcessLock {
  private readonly db: Database.Database;
  private depth = 0;

  constructor(
    dir: string,
    readonly name: string,
  ) {
    this.db = new Database(join(dir, `${name}.lock`), { timeout: LOCK_TIMEOUT_MS });
  }

  /** Run fn holding the lock; nested calls in the same process join the outer hold. */
  hold<T>(fn: () => T): T {
    if (this.depth > 0) return this.run(fn);
    try {
      this.db.exec("BEGIN IMMEDIATE");
    } catch (err) {
      if ((err as { code?: string }).code?.startsWith("SQLITE_BUSY"))
        throw new NetctxError(
          "busy",
          `the ${this.name} lock stayed held for ${LOCK_TIMEOUT_MS / 1000} s by another netctx process`,
        );
      throw err;
    }
    try {
      return this.run(fn);
    } finally {
      this.db.exec("COMMIT");
    }
  }

  private run<T>(fn: () => T): T {
    this.depth++;
    try {
      return fn();
    } finally {
      this.depth--;
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
