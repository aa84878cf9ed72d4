/**
 * `netctx serve`: the resident engine. It keeps the state store, the netlink socket and the firewall open and answers
 * a small HTTP API on a unix socket, so a CNI call costs the kernel work instead of a Node start (~0.1 s) plus
 * loading the engine (~0.1 s). Requests are handled one at a time: the engine is synchronous, and that keeps every
 * setns window on the main thread with nothing else interleaved.
 */
import { chmodSync, existsSync, unlinkSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect, type Socket } from "node:net";
import type { ClusterMember } from "../cluster/member.ts";
import { runCni } from "../cni/run.ts";
import type { DnsService } from "../dns/service.ts";
import { type ApplyRequest, engineApplySync } from "../engine/apply-run.ts";
import { connectContext, disconnectContext } from "../engine/context-networks.ts";
import { createContext, removeContext } from "../engine/contexts.ts";
import { DnsFeed } from "../engine/dns-feed.ts";
import {
  type DriftWatch,
  dropDriftReading,
  keepDriftReading,
  keptDriftReading,
} from "../engine/drift-watch.ts";
import { createNetwork, removeNetwork } from "../engine/networks.ts";
import type { OverlayEngine } from "../engine/overlay.ts";
import { addPolicy, policyView, removePolicy } from "../engine/policies.ts";
import { statsView } from "../engine/stats.ts";
import { contextView, contextViews, inspectView } from "../engine/views.ts";
import { invalid, NetctxError, notFound } from "../errors.ts";
import type { Host } from "../host.ts";
import { CallerCheck } from "./caller.ts";
import { handleCluster } from "./cluster-routes.ts";
import { EngineMetrics } from "./metrics.ts";
import { handleOverlay } from "./overlay-routes.ts";
import { errorReply, json, type Reply } from "./reply.ts";

/** CNI environment travels as headers: X-Cni-Command, X-Cni-Containerid, ... (names case-insensitive). */
export const CNI_ENV_KEYS = [
  "CNI_COMMAND",
  "CNI_CONTAINERID",
  "CNI_NETNS",
  "CNI_IFNAME",
  "CNI_ARGS",
  "CNI_PATH",
] as const;

export function cniHeaderName(key: string): string {
  return `x-${key.toLowerCase().replace("_", "-")}`;
}

/** The CNI environment a /v1/cni request carries in its headers. */
export function cniEnvOf(headers: IncomingMessage["headers"]): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const key of CNI_ENV_KEYS) {
    const value = headers[cniHeaderName(key)];
    if (typeof value === "string") env[key] = value;
  }
  return env;
}

export function handle(
  host: Host,
  method: string,
  path: string,
  headers: IncomingMessage["headers"],
  body: string,
): Reply {
  const parts = path.split("?")[0]!.split("/").filter(Boolean);
  try {
    if (parts[0] !== "v1") return json(404, { error: { code: "not-found", message: `no route ${path}` } });
    const [, kind, name, verb] = parts;
    if (kind === "cni" && method === "POST") {
      const out = runCni(cniEnvOf(headers), body, host);
      return { status: out.code === 0 ? 200 : 500, body: out.stdout };
    }
    if (kind === "apply" && method === "POST" && !name)
      return json(200, engineApplySync(host, JSON.parse(body || "{}") as ApplyRequest));
    if (kind === "health") return json(200, { ok: true, pid: process.pid });
    // `?name=A&name=B`: only those contexts (an unknown one is a 404 naming it).
    if (kind === "stats" && method === "GET" && !name)
      return json(200, statsView(host, { names: queryAll(path, "name"), keepNetnsFiles: true }));
    // Run the cleanup the engine left for a pause (deferred DEL teardowns, batched nft removals) now, and take the
    // drift reading `ls` answers from if it went stale: for callers that need the engine settled (tests, benchmarks
    // charging that work to the removals that left it, or keeping it off the next measured command).
    if (kind === "settle" && method === "POST") {
      host.flushDeferred();
      return json(200, { settled: true, driftRead: keptDriftReading(host)?.settle() ?? false });
    }
    if (kind === "networks" && name && method === "POST" && (verb === "connect" || verb === "disconnect")) {
      // The network is the path's; the body names the context (Docker's and podman's API shape).
      const input = { ...JSON.parse(body || "{}"), network: name };
      const record = verb === "connect" ? connectContext(host, input) : disconnectContext(host, input);
      return json(200, contextView(host, record));
    }
    if (kind === "networks") {
      if (method === "GET" && !name) return json(200, host.store.listNetworks());
      if (method === "GET") return json(200, host.store.getNetwork(name!) ?? throwNotFound("network", name!));
      if (method === "POST") return json(201, createNetwork(host, JSON.parse(body || "{}")));
      if (method === "DELETE") return json(200, removeNetwork(host, name!));
    }
    if (kind === "policies") {
      if (method === "GET" && !name) return json(200, host.store.listPolicies().map(policyView));
      if (method === "GET")
        return json(200, policyView(host.store.getPolicy(name!) ?? throwNotFound("policy", name!)));
      if (method === "POST" && !name) return json(201, policyView(addPolicy(host, JSON.parse(body || "{}"))));
      if (method === "DELETE") return json(200, { removed: removePolicy(host, name!) !== undefined });
    }
    if (kind === "contexts") {
      if (method === "GET" && !name) return json(200, contextViews(host));
      if (method === "GET") {
        const record = host.store.getContext(name!) ?? throwNotFound("context", name!);
        return json(200, inspectView(host, record));
      }
      if (method === "POST")
        return json(201, contextView(host, createContext(host, JSON.parse(body || "{}"))));
      if (method === "DELETE") {
        const force = queryFlag(path, "force");
        return json(200, { removed: removeContext(host, name!, { force }) !== undefined });
      }
    }
    return json(404, { error: { code: "not-found", message: `no route ${method} ${path}` } });
  } catch (err) {
    return errorReply(err);
  }
}

/** Every value of a repeated query parameter (`?name=a&name=b`). */
function queryAll(path: string, key: string): string[] {
  const query = path.includes("?") ? path.slice(path.indexOf("?") + 1) : "";
  return new URLSearchParams(query).getAll(key);
}

/** A boolean query parameter: present as 1 or true (`?force=1`). */
function queryFlag(path: string, key: string): boolean {
  const query = path.includes("?") ? path.slice(path.indexOf("?") + 1) : "";
  const value = new URLSearchParams(query).get(key);
  return value === "1" || value === "true";
}

function throwNotFound(what: string, name: string): never {
  throw notFound(what, name);
}

/** `GET /v1/resolve?name=NAME[&network=NET]`: what the engine's DNS server answers for NAME, per network. */
async function resolveReply(dns: DnsService | undefined, url: string): Promise<Reply> {
  if (!dns)
    return json(404, { error: { code: "not-found", message: "this engine serves no DNS (serve --no-dns)" } });
  const query = new URLSearchParams(url.includes("?") ? url.slice(url.indexOf("?") + 1) : "");
  const name = query.get("name");
  if (!name) return errorReply(invalid("name", "a name to resolve is required"));
  const network = query.get("network") ?? undefined;
  return json(200, await dns.resolve(name, network));
}

/**
 * `GET /v1/dns`: whether this engine serves DNS, under which domain and on which addresses now (`netctx exec` names
 * those of the context's networks in its resolv.conf).
 */
async function dnsReply(dns: DnsService | undefined): Promise<Reply> {
  if (!dns) return json(200, { serving: false, domain: "", listening: [] });
  return json(200, { serving: true, domain: dns.domain, listening: await dns.listening() });
}

/** `GET /metrics`: the Prometheus text (api/metrics.ts). */
async function metricsReply(metrics: EngineMetrics): Promise<Reply> {
  try {
    return { status: 200, body: await metrics.text(), type: metrics.contentType };
  } catch (err) {
    return errorReply(err);
  }
}

/** A socket file nobody answers on is a leftover of a killed engine; a live one means another engine runs. */
async function claimSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(path, () => {
      s.end();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
  if (alive)
    throw new NetctxError("conflict", `another netctx engine is already serving on ${path}`, "socket");
  unlinkSync(path);
}

/** One line per request on the engine's stdout, so an operator (and a test) can see who asked what. */
function requestLine(req: IncomingMessage, status: number, ms: number): string {
  const cni = req.headers[cniHeaderName("CNI_COMMAND")];
  const what =
    typeof cni === "string" ? ` ${cni} ${req.headers[cniHeaderName("CNI_CONTAINERID")] ?? ""}` : "";
  return `${req.method} ${req.url}${what} -> ${status} (${ms.toFixed(1)} ms)`;
}

/** What answers the engine's API: the unix socket's listener and the dashboard's (api/dashboard.ts) share it. */
export interface EngineParts {
  host: Host;
  cluster?: ClusterMember | undefined;
  overlay?: OverlayEngine | undefined;
  dns?: DnsService | undefined;
  /** `GET /metrics` (api/metrics.ts); without it the path is not found. */
  metrics?: EngineMetrics | undefined;
}

/** One request of the engine's JSON API, whichever listener it came through. */
export async function route(
  parts: EngineParts,
  method: string,
  url: string,
  headers: IncomingMessage["headers"],
  body: string,
): Promise<Reply> {
  const { host, cluster, overlay, dns, metrics } = parts;
  if (metrics && url.split("?")[0] === "/metrics" && method === "GET") return metricsReply(metrics);
  // Cluster requests wait on etcd (up to 5 s): they run beside the others, and touch no kernel state. Overlay
  // requests wait on etcd only when they must (engine/overlay.ts); their kernel work runs in one synchronous step.
  if (url.startsWith("/v1/resolve")) return resolveReply(dns, url);
  if (url === "/v1/dns") return dnsReply(dns);
  if (url.startsWith("/v1/cluster")) return handleCluster(cluster, method, url, overlay);
  return (
    (await handleOverlay(
      overlay,
      host,
      method,
      url,
      body,
      url.startsWith("/v1/cni") ? cniEnvOf(headers) : undefined,
    )) ?? handle(host, method, url, headers, body)
  );
}

const IDLE_FLUSH_MS = 30;
const RESYNC_MS = 1000;
const MAX_DEFER_MS = 500;
/**
 * How often an idle engine asks whether its drift reading went stale (a few system calls: ~30 us), and how long
 * requests must have paused before it takes a new one. An rm's kernel cleanup announces itself again tens of ms
 * later (the namespace goes in a kernel worker, its veth with it): a slower tick left the next `ls` to read itself.
 */
const DRIFT_POLL_MS = 25;
const DRIFT_QUIET_MS = 30;
/**
 * Once no request has come for DRIFT_ACTIVE_MS, the question is asked every DRIFT_IDLE_POLL_MS instead: an idle
 * engine asking 40 times a second cost ~1.4% of a core (measured: the asking itself, its SQLite read and the
 * garbage it makes), and nothing but the rare change by hand happens then (a request reads itself if the reading is
 * stale, so a slower tick costs that `ls` the reading, never a wrong answer).
 */
const DRIFT_ACTIVE_MS = 2000;
const DRIFT_IDLE_POLL_MS = 500;
/**
 * The dearest reading taken in the background: the engine does kernel work on one thread, so a create or a CNI ADD
 * arriving during a reading waits for its end. Past this (thousands of contexts: seconds) the next `ls` reads, as
 * every `ls` did before readings were kept, and nothing else waits.
 */
const DRIFT_BACKGROUND_MAX_MS = 100;

/**
 * The drift reading `ls` answers from (engine/drift-watch.ts), taken again in the background once requests pause:
 * DRIFT_QUIET_MS after the last one, or as long as a reading takes, and only while a reading is cheap
 * (DRIFT_BACKGROUND_MAX_MS): a request arriving during it waits at most that long.
 */
function keepDriftFresh(
  host: Host,
  log: (line: string) => void,
): { drift: DriftWatch | undefined; busy: () => () => void; stop: () => void } {
  let drift: DriftWatch | undefined;
  try {
    drift = keepDriftReading(host);
  } catch (err) {
    log(`drift: no kernel notifications (${(err as Error).message}): every ls reads the kernel`);
  }
  let inFlight = 0;
  let lastActivity = performance.now();
  let poll: NodeJS.Timeout | undefined;
  let stopped = false;
  const tick = () => {
    const quiet = performance.now() - lastActivity;
    if (drift && inFlight === 0 && !host.hasDeferred && drift.lastCostMs <= DRIFT_BACKGROUND_MAX_MS)
      if (quiet >= Math.max(DRIFT_QUIET_MS, drift.lastCostMs))
        try {
          drift.settle();
        } catch (err) {
          log(`drift: reading failed: ${(err as Error).message}`);
        }
    poll = setTimeout(tick, quiet > DRIFT_ACTIVE_MS ? DRIFT_IDLE_POLL_MS : DRIFT_POLL_MS);
    poll.unref();
  };
  const wake = () => {
    // A request after a long quiet: back to the short tick at once, not after the idle one runs out.
    if (stopped) return;
    clearTimeout(poll);
    poll = setTimeout(tick, DRIFT_POLL_MS);
    poll.unref();
  };
  if (drift) wake();
  return {
    drift,
    busy: () => {
      inFlight++;
      return () => {
        inFlight--;
        const wasQuiet = performance.now() - lastActivity > DRIFT_ACTIVE_MS;
        lastActivity = performance.now();
        if (drift && wasQuiet) wake();
      };
    },
    stop: () => {
      stopped = true;
      clearTimeout(poll);
      dropDriftReading(host);
    },
  };
}

export async function serve(
  host: Host,
  socketPath: string,
  log: (line: string) => void = () => {},
  cluster?: ClusterMember,
  overlay?: OverlayEngine,
  dns?: DnsService,
  /** Shared with the dashboard's listener (cli/serve.ts), which serves /metrics too. */
  metrics: EngineMetrics = new EngineMetrics(host, cluster),
): Promise<Server> {
  await claimSocket(socketPath);
  // The DNS server (a worker thread) learns what changed after every request that may have changed names, before
  // the reply leaves: a context answers by name as soon as its create returns, and not once its rm has.
  const feed = new DnsFeed();
  const syncNames = async () => {
    // Other hosts learn this one's names through etcd, published off the request's path (engine/overlay-names.ts).
    overlay?.names.publishSoon();
    if (!dns) return;
    try {
      await dns.update(feed.changes(host, overlay?.names.remoteContexts()));
    } catch (err) {
      log(`dns: names not updated: ${(err as Error).message}`);
    }
  };
  overlay?.names.onChange(() => void syncNames());
  await syncNames();
  // Records change outside requests too (gc's periodic check, the overlay engine mirroring etcd): those reach the
  // names within a second. A pass that finds nothing changed costs ~1 ms at 1000 contexts (engine/dns-feed.ts).
  const resync = dns ? setInterval(() => void syncNames(), RESYNC_MS) : undefined;
  resync?.unref();
  // Deferred cleanup (host.defer) runs once requests pause, so a burst of DELs shares its kernel commits.
  // A steady stream of requests still gets it done within MAX_DEFER_MS.
  let idle: NodeJS.Timeout | undefined;
  let waitingSince: number | undefined;
  const flushWhenIdle = () => {
    clearTimeout(idle);
    if (!host.hasDeferred) return;
    waitingSince ??= performance.now();
    const overdue = performance.now() - waitingSince > MAX_DEFER_MS;
    idle = setTimeout(
      () => {
        waitingSince = undefined;
        try {
          host.flushDeferred();
          fresh.drift?.invalidate();
        } catch (err) {
          log(`deferred cleanup failed (gc will finish it): ${(err as Error).message}`);
        }
        void syncNames();
      },
      overdue ? 0 : IDLE_FLUSH_MS,
    );
    idle.unref();
  };
  const fresh = keepDriftFresh(host, log);
  const callers = new CallerCheck(host.config.cgroupParent);
  const parts: EngineParts = { host, cluster, overlay, dns, metrics };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const refused = refusals.get(req.socket);
    if (refused !== undefined) {
      const reply = json(403, { error: { code: "forbidden", message: `refused: ${refused}` } });
      res.writeHead(reply.status, { "content-type": "application/json" });
      res.end(reply.body);
      log(`${req.method} ${req.url} -> 403 (${refused})`);
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const started = performance.now();
      const url = req.url ?? "/";
      const method = req.method ?? "GET";
      const body = Buffer.concat(chunks).toString("utf8");
      const done = fresh.busy();
      let reply: Reply;
      try {
        // Before it runs: a reading taken within (settle's) comes after its changes.
        if (method !== "GET") fresh.drift?.invalidate();
        reply = await route(parts, method, url, req.headers, body);
        if (method !== "GET") await syncNames();
      } finally {
        done();
      }
      res.writeHead(reply.status, {
        "content-type": reply.type ?? "application/json",
        "content-length": Buffer.byteLength(reply.body),
      });
      res.end(reply.body);
      const ms = performance.now() - started;
      metrics.observeRequest(method, url, ms / 1000);
      log(requestLine(req, reply.status, ms));
      flushWhenIdle();
    });
  });
  // Checked once per connection, before any request on it is read.
  const refusals = new WeakMap<Socket, string>();
  server.on("connection", (socket: Socket) => {
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    let why: string | undefined;
    try {
      why = fd === undefined || fd < 0 ? "the connection has no descriptor to ask" : callers.refusal(fd);
    } catch (err) {
      why = `the caller could not be identified: ${(err as Error).message}`;
    }
    if (why !== undefined) refusals.set(socket, why);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  server.on("close", () => {
    clearInterval(resync);
    fresh.stop();
  });
  return server;
}
