/**
 * The engine's handle on its DNS server: starts the worker thread (worker.ts), hands it the changes to its names
 * (engine/dns-feed.ts), and asks it for `netctx resolve`. Posting a change costs the main thread a
 * structured clone of what changed, nothing more.
 */
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { DnsUpdate } from "./feed.ts";
import type { Resolution } from "./resolution.ts";
import type { FromWorker, ToWorker, WorkerSettings } from "./worker-protocol.ts";

export interface DnsServiceOptions extends WorkerSettings {
  log: (line: string) => void;
}

/**
 * The worker's entry: from the bundle, dist/netctx-dns.mjs beside it (scripts/build.mjs); from the sources, worker.ts
 * through tsx, which a worker does not inherit from the thread that starts it.
 */
function startWorker(settings: WorkerSettings): Worker {
  if (!import.meta.url.endsWith(".ts"))
    return new Worker(new URL("./netctx-dns.mjs", import.meta.url), { workerData: settings });
  const tsx = import.meta.resolve("tsx/esm/api");
  const entry = new URL("./worker.ts", import.meta.url).href;
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(boot, { eval: true, workerData: settings });
}

export class DnsService {
  private seq = 0;
  private readonly waiting = new Map<number, (msg: FromWorker) => void>();

  private constructor(
    private readonly worker: Worker,
    /** The domain names answer under (NAME.NETWORK.DOMAIN). */
    readonly domain: string,
  ) {
    worker.on("message", (msg: FromWorker) => {
      if ("seq" in msg) {
        this.waiting.get(msg.seq)?.(msg);
        this.waiting.delete(msg.seq);
      }
    });
  }

  static async start(opts: DnsServiceOptions): Promise<DnsService> {
    const { log, ...settings } = opts;
    const worker = startWorker(settings);
    worker.on("message", (msg: FromWorker) => {
      if (msg.type === "log") log(msg.line);
    });
    worker.on("error", (err) => log(`dns: worker failed: ${err.message}`));
    await new Promise<void>((resolve, reject) => {
      worker.once("error", reject);
      worker.on("message", (msg: FromWorker) => {
        if (msg.type === "ready") resolve();
      });
    });
    // Not unref'd: the engine's startup awaits the worker before anything else holds the event loop open, and an
    // unref'd worker let the process end there (serve's stop() terminates it).
    return new DnsService(worker, settings.domain);
  }

  /** Hand the worker what changed; resolves once it has applied it (the next query sees it). */
  update(updates: DnsUpdate[]): Promise<void> {
    if (updates.length === 0) return Promise.resolve();
    return this.ask({ type: "updates", seq: 0, updates }).then(() => {});
  }

  async resolve(name: string, network?: string): Promise<Resolution> {
    const msg = await this.ask({
      type: "resolve",
      seq: 0,
      name,
      ...(network !== undefined ? { network } : {}),
    });
    return (msg as Extract<FromWorker, { type: "resolved" }>).resolution;
  }

  /** The addresses the server listens on now (a bind that failed is retried, and missing here until it works). */
  async listening(): Promise<string[]> {
    const msg = await this.ask({ type: "listening", seq: 0 });
    return (msg as Extract<FromWorker, { type: "listening" }>).addresses;
  }

  async stop(): Promise<void> {
    const exited = new Promise<void>((resolve) => this.worker.once("exit", () => resolve()));
    this.worker.postMessage({ type: "stop" } satisfies ToWorker);
    await Promise.race([exited, new Promise((r) => setTimeout(r, 1000).unref())]);
    await this.worker.terminate();
  }

  private ask(msg: Exclude<ToWorker, { type: "stop" }>): Promise<FromWorker> {
    const seq = ++this.seq;
    return new Promise((resolve) => {
      this.waiting.set(seq, resolve);
      this.worker.postMessage({ ...msg, seq });
    });
  }
}

/** For tests and diagnostics: where the worker entry is taken from. */
export const serviceSource = fileURLToPath(import.meta.url);
