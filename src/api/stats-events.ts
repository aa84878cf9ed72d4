/**
 * Live counters for the dashboard as server-sent events: the engine's `GET /v1/stats` answer, once a second, to every
 * open page. One reading a second serves all of them (three tabs do not triple the cost), and none runs while
 * nobody watches.
 */
import type { ServerResponse } from "node:http";
import type { Reply } from "./reply.ts";

export const STATS_INTERVAL_MS = 1000;

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
    this.timer ??= setInterval(() => void this.send(this.watchers), STATS_INTERVAL_MS);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
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
