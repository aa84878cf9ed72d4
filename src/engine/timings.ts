/**
 * How long the engine's background work took (gc, the reconcile passes), handed to whoever listens on the Host (the
 * engine's /metrics): the work itself knows nothing of Prometheus.
 */
import { type Host, hostSlot } from "../host.ts";

export type TimedWork = "gc" | "reconcile";
export type TimingSink = (work: TimedWork, pass: string, seconds: number) => void;

const SINKS = hostSlot(() => new Set<TimingSink>());

export function onTiming(host: Host, sink: TimingSink): void {
  host.cache(SINKS).add(sink);
}

/** Runs `fn` and reports its duration (also when it throws). */
export function timed<T>(host: Host, work: TimedWork, pass: string, fn: () => T): T {
  const started = performance.now();
  try {
    return fn();
  } finally {
    const seconds = (performance.now() - started) / 1000;
    for (const sink of host.cache(SINKS)) sink(work, pass, seconds);
  }
}
