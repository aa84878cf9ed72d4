/** Counters to rates: the stats view's totals at two instants (`at`: epoch ms or an ISO date). */

export interface Direction {
  bytes: number;
  packets: number;
  drops: number;
}

export interface ContextStats {
  name: string;
  level: string;
  networks: string[];
  rx: Direction;
  tx: Direction;
  connections: number;
}

export interface StatsView {
  at: number | string;
  node: string;
  contexts: ContextStats[];
  networks: { name: string; driver: string; rx: Direction; tx: Direction }[];
}

export function instant(at: number | string): number {
  return typeof at === "number" ? at : Date.parse(at);
}

/** Bytes a second in and out per context since the previous view; a counter that went back (a re-made context) reads 0. */
export function byteRates(
  previous: StatsView | undefined,
  current: StatsView,
): Map<string, { rx: number; tx: number }> {
  const out = new Map<string, { rx: number; tx: number }>();
  if (!previous) return out;
  const seconds = (instant(current.at) - instant(previous.at)) / 1000;
  if (!(seconds > 0)) return out;
  const before = new Map(previous.contexts.map((c) => [c.name, c]));
  for (const c of current.contexts) {
    const p = before.get(c.name);
    if (!p) continue;
    out.set(c.name, {
      rx: Math.max(0, c.rx.bytes - p.rx.bytes) / seconds,
      tx: Math.max(0, c.tx.bytes - p.tx.bytes) / seconds,
    });
  }
  return out;
}

export function humanBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n < 10 && i > 0 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}
