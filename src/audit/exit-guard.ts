/**
 * What the audit makes on the host's file system (a directory under /var/lib, a socket under /run, the probes'
 * files in /tmp) must go when the audit ends, also when it ends early. The audit's own path removes them; until it
 * has, this guard runs the same removal should the process exit or a signal end it first.
 */
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/** Run `cleanup` (synchronous, harmless twice) at exit or on a terminating signal; returns the guard's release. */
export function guardExit(cleanup: () => void): () => void {
  // Only signals nobody else listens for: a process that handles one (netctx serve's SIGTERM) ends its own way, and
  // its exit still runs the cleanup.
  const taken = SIGNALS.filter((s) => process.listenerCount(s) === 0);
  const release = (): void => {
    for (const s of taken) process.removeListener(s, onSignal);
    process.removeListener("exit", cleanup);
  };
  function onSignal(sig: NodeJS.Signals): void {
    release();
    cleanup();
    // With no listener left the signal's default action applies: the process ends as the signal meant it to.
    process.kill(process.pid, sig);
  }
  for (const s of taken) process.on(s, onSignal);
  process.on("exit", cleanup);
  return release;
}
