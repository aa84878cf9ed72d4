/**
 * Live counters for the dashboard as server-sent events: the engine's `GET /v1/stats` answer, once a second, to every
 * open page. One reading a second serves all of them (three tabs do not triple the cost), and none runs while
 * nobody watches. The engine answers one request at a time, and a reading costs it ~0.2 s at 1000 contexts (measured
 * in test/dashboard/scale on a loaded machine): readings are spaced so that they take at most a fifth of its time,
 * once a second up to 200 ms a reading, slower beyond.
 */
import type { ServerResponse } from "node:http";
import type { Reply } from "./reply.ts";

export const STATS_INTERVAL_MS = 1000;
/** A reading may take this share of the engine's time at most. */
const BUDGET_SHARE = 0.2;

export class StatsEvents {
  private readonly watchers = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | undefined;

  /** `read`: the engine's answer to GET /v1/stats. */
  constructor(private readonly read: () => Promise<Reply>) {}

  watch(res: ServerResponse): void {
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      connection: "keep-alive",
    });
    // The browser reconnects after this long if the engine restarts.
    res.write("retry: 2000\n\n");
    this.watchers.add(res);
    res.on("close", () => {
      this.watchers.delete(res);
      if (this.watchers.size === 0) this.stop();
    });
    void this.send(new Set([res]));
    if (this.timer === undefined) this.schedule(STATS_INTERVAL_MS);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(async () => {
      const started = performance.now();
      await this.send(this.watchers);
      const took = performance.now() - started;
      if (this.watchers.size > 0)
        this.schedule(Math.max(STATS_INTERVAL_MS - took, took / BUDGET_SHARE - took));
    }, delayMs);
  }

  /** End every stream (the listener closes: open streams would hold it open). */
  close(): void {
    this.stop();
    for (const res of this.watchers) res.end();
    this.watchers.clear();
  }

  private async send(to: Set<ServerResponse>): Promise<void> {
    if (to.size === 0) return;
    let event: string;
    try {
      const reply = await this.read();
      // A stats view this engine cannot give (an older engine without it) is said once a second, not hidden.
      event = reply.status === 200 ? "stats" : "unavailable";
      event = `event: ${event}\ndata: ${reply.body.trim()}\n\n`;
    } catch (err) {
      event = `event: unavailable\ndata: ${JSON.stringify({ error: { message: (err as Error).message } })}\n\n`;
    }
    for (const res of to) res.write(event);
  }
}
