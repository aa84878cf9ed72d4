/**
 * Sleeps the calling thread: the engine's kernel and store work is synchronous (setns windows, SQLite retries, kill
 * rounds), so a wait inside it must not yield to the event loop.
 */
const sleeper = new Int32Array(new SharedArrayBuffer(4));

export function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}
