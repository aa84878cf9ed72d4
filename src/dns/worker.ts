/**
 * The worker thread that runs the DNS server (service.ts starts it): the engine's main thread does kernel work
 * synchronously, and a query must not wait behind a bulk apply. Table changes and `resolve` requests arrive by
 * message; the worker answers queries on its own event loop.
 */
import { parentPort, workerData } from "node:worker_threads";
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

port.on("message", (msg: ToWorker) => {
  switch (msg.type) {
    case "updates":
      server.update(msg.updates);
      port.postMessage({ type: "applied", seq: msg.seq });
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
