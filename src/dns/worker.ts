/**
 * The worker thread that runs the DNS server (service.ts starts it): the engine's main thread does kernel work
 * synchronously, and a query must not wait behind a bulk apply. Table changes and `resolve` requests arrive by
 * message; the worker answers queries on its own event loop.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { DnsUpdate } from "./feed.ts";
import { readNameservers } from "./resolv-conf.ts";
import { DnsServer } from "./server.ts";
import type { ToWorker, WorkerSettings } from "./worker-protocol.ts";

/** resolv.conf is read again this often (a laptop's changes with its network). */
const UPSTREAM_REREAD_MS = 5000;

const settings = workerData as WorkerSettings;
const port = parentPort!;
const server = new DnsServer({
  domain: settings.domain,
  port: settings.port,
  upstreams: () => readNameservers(settings.resolvConf),
  hostListen: settings.hostListen ?? [],
  log: (line) => port.postMessage({ type: "log", line }),
});
const reread = setInterval(() => server.refreshUpstreams(), UPSTREAM_REREAD_MS);
reread.unref();

/**
 * A batch of changes is applied this many at a time, with the queries that arrived meanwhile answered in between:
 * the 500 contexts of one apply held the worker 10-17 ms in one go (measured, tables not yet optimised by the JIT),
 * and every query waited behind them. Each change stays whole (tables.ts); batches are applied in the order sent.
 */
const SLICE = 50;
let applying = Promise.resolve();

function applyInSlices(updates: DnsUpdate[], seq: number): void {
  applying = applying.then(async () => {
    for (let i = 0; i < updates.length; i += SLICE) {
      if (i > 0) await new Promise((resolve) => setImmediate(resolve));
      server.update(updates.slice(i, i + SLICE));
    }
    port.postMessage({ type: "applied", seq });
  });
}

port.on("message", (msg: ToWorker) => {
  switch (msg.type) {
    case "updates":
      applyInSlices(msg.updates, msg.seq);
      return;
    case "resolve":
      port.postMessage({ type: "resolved", seq: msg.seq, resolution: server.resolve(msg.name, msg.network) });
      return;
    case "listening":
      port.postMessage({ type: "listening", seq: msg.seq, addresses: server.listening() });
      return;
    case "stop":
      clearInterval(reread);
      void server.close().then(() => port.close());
      return;
  }
});
port.postMessage({ type: "ready" });
