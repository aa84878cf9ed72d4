/**
 * Who reaches whom, on the wire: TCP and UDP probes from a context (its netns for l2, `netctx exec` for the shared
 * stack), from an outside netns, or from the test's own namespace, run side by side so the blocked ones wait their
 * timeouts together. The policy tests compare a whole table of them at once.
 */
import { type ProbePlace, probe } from "./socket-probe.ts";

/** Where a probe runs: an l2 context (its netns), a shared-stack context (exec, its cgroup), or plainly (undefined). */
export type ReachFrom = ProbePlace | undefined;

export async function tcpReaches(
  from: ReachFrom,
  to: string,
  port: number,
  timeoutMs = 800,
): Promise<boolean> {
  const [r] = await probe(from, [{ op: "tcp", host: to, port, timeoutMs }]);
  return r!.ok;
}

/** A datagram that gets its answer back (the reply is part of it). */
export async function udpReaches(from: ReachFrom, to: string, port: number): Promise<boolean> {
  const [r] = await probe(from, [{ op: "udp", host: to, port, reply: true }]);
  return r!.ok;
}

/** Several probes at once; resolves with each one's outcome under its name. */
export async function reach(
  probes: Record<string, () => Promise<boolean>>,
): Promise<Record<string, boolean>> {
  const names = Object.keys(probes);
  const results = await Promise.all(names.map((n) => probes[n]!()));
  return Object.fromEntries(names.map((n, i) => [n, results[i]!]));
}
