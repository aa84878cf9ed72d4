/**
 * The counter files of l2 contexts' netns kept open by the resident engine (kernel/proc-net.ts NetnsCounterFiles):
 * a scrape at 1000 l2 contexts then reads them without entering 1000 namespaces. An open file holds its netns alive,
 * so the l2 level closes a context's files before it deletes the netns (l2.ts teardown), and a reading drops those of
 * netns no context has any more.
 */
import { type Host, hostSlot } from "../host.ts";
import { KernelError } from "../kernel/errors.ts";
import { NetnsCounterFiles, type NetnsCounters, netnsCounters } from "../kernel/proc-net.ts";

const KEPT = hostSlot(() => new Map<string, NetnsCounterFiles>());

/** The counters of the netns at `path`, through its files kept open (opened on first use). */
export function keptNetnsCounters(host: Host, path: string): NetnsCounters {
  const kept = host.cache(KEPT);
  let files = kept.get(path);
  if (!files) {
    try {
      files = NetnsCounterFiles.open(path);
    } catch (err) {
      // Out of descriptors (two a context, at 1024 and up): read it the one-shot way rather than fail the reading.
      const code = err instanceof KernelError ? err.errnoName : (err as NodeJS.ErrnoException).code;
      if (code === "EMFILE" || code === "ENFILE" || code === "EINVAL") return netnsCounters(path);
      throw err;
    }
    kept.set(path, files);
  }
  return files.read();
}

/** Close the files of one netns (before it is deleted); nothing when none are open. */
export function releaseNetnsCounters(host: Host, path: string | undefined): void {
  if (path === undefined) return;
  const kept = host.cache(KEPT);
  kept.get(path)?.close();
  kept.delete(path);
}

/** Close the files of every netns not in `live`. */
export function releaseNetnsCountersExcept(host: Host, live: ReadonlySet<string>): void {
  for (const path of [...host.cache(KEPT).keys()]) if (!live.has(path)) releaseNetnsCounters(host, path);
}
