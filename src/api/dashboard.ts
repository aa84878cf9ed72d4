/**
 * `serve --listen ADDR:PORT`: the dashboard's TCP listener. It serves the page (bundled into dist/web at build time by
 * scripts/build.mjs; nothing comes from the internet), the live counters as server-sent events, the audit on demand,
 * and the engine's JSON API read-only.
 *
 * Read-only, because over TCP the engine cannot see who calls: the unix socket is root-only and refuses callers inside
 * a context by SO_PEERCRED (api/caller.ts), while a TCP peer is an address. A process in an l3 or socket context
 * shares the host's stack and reaches a loopback listener; the token is then all that stands between it and the
 * engine. A leaked token should show the topology, not create contexts, change policies or run CNI verbs as root:
 * changes stay on the unix socket. The one POST is the audit run, which changes nothing and runs one at a time.
 */
import { readdirSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { extname, join } from "node:path";
import { NetctxError } from "../errors.ts";
import type { AuditRuns } from "./audit-runs.ts";
import { dashboardContexts } from "./dashboard-routes.ts";
import { json, type Reply } from "./reply.ts";
import { type EngineParts, route } from "./server.ts";
import { StatsEvents } from "./stats-events.ts";
import type { WebAuth } from "./web-auth.ts";
import type { ListenAddress } from "./web-listen.ts";

export interface DashboardOptions {
  engine: EngineParts;
  listen: ListenAddress;
  auth: WebAuth;
  /** dist/web: index.html and the bundle. */
  assetsDir: string;
  audits: AuditRuns;
  reaches: AuditRuns;
  log: (line: string) => void;
}

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
};

/**
 * The page's scripts and styles come only from this listener; cytoscape sets inline styles on its container.
 * no-referrer: the address the page was opened with (it may still hold ?token=) never leaves in a Referer.
 */
const PAGE_HEADERS = {
  "content-security-policy":
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
};

/** The bundled files, read once: a missing build is a clear error at start, not a blank page later. */
export function loadAssets(dir: string): Map<string, Buffer> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    names = [];
  }
  if (!names.includes("index.html"))
    throw new NetctxError(
      "unavailable",
      `listen: the dashboard's page is not built (${dir}/index.html): run npm run build`,
      "listen",
    );
  return new Map(names.map((n) => [n, readFileSync(join(dir, n))]));
}

export async function serveDashboard(o: DashboardOptions): Promise<Server> {
  const assets = loadAssets(o.assetsDir);
  const stats = new StatsEvents(() => route(o.engine, "GET", "/v1/stats", {}, ""));
  const server = createServer((req, res) => {
    // No route here reads a body (GETs, and the audit's POST takes none): it is drained unread, so nobody, with a
    // token or without, makes the engine hold a large upload in memory.
    req.resume();
    void answer(o, assets, stats, req, res).catch((err) => {
      o.log(`dashboard: ${req.method} ${req.url}: ${(err as Error).message}`);
      if (!res.headersSent) send(res, json(500, { error: { code: "internal", message: "internal error" } }));
    });
  });
  server.on("close", () => stats.close());
  // Open event streams would keep close() waiting for ever.
  const close = server.close.bind(server);
  server.close = (cb?: (err?: Error) => void) => {
    stats.close();
    o.audits.stop();
    o.reaches.stop();
    server.closeAllConnections();
    return close(cb);
  };
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        new NetctxError(
          "invalid",
          `listen: cannot listen on ${hostPort(o.listen)}: ${err.code ?? err.message}`,
          "listen",
        ),
      ),
    );
    server.listen(o.listen.port, o.listen.address, () => resolve());
  });
  return server;
}

export function hostPort(l: ListenAddress): string {
  return l.address.includes(":") ? `[${l.address}]:${l.port}` : `${l.address}:${l.port}`;
}

async function answer(
  o: DashboardOptions,
  assets: Map<string, Buffer>,
  stats: StatsEvents,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const method = req.method ?? "GET";
  const url = req.url ?? "/";
  const path = url.split("?")[0]!;
  const admission = o.auth.admit(req);
  if (admission.kind === "refused") {
    o.log(`dashboard: ${method} ${path} from ${req.socket.remoteAddress} -> 401 (no valid token)`);
    return send(
      res,
      json(401, {
        error: {
          code: "unauthorized",
          message: "a token is required: open /?token=TOKEN or send Authorization: Bearer TOKEN",
        },
      }),
      { "www-authenticate": 'Bearer realm="netctx"' },
    );
  }
  if (admission.kind === "login") {
    res.writeHead(303, { location: "/", "set-cookie": admission.setCookie, ...PAGE_HEADERS });
    res.end();
    return;
  }
  const reading = method === "GET" || method === "HEAD";
  if (reading && (path === "/" || path === "/index.html")) return sendAsset(res, assets, "index.html");
  if (reading && path.startsWith("/assets/")) return sendAsset(res, assets, path.slice("/assets/".length));
  if (reading && path === "/ui/events") return stats.watch(res);
  const records = reading ? dashboardContexts(o.engine.host, path) : undefined;
  if (records) return send(res, records);
  if (path === "/ui/audit" && reading) return send(res, json(200, o.audits.current()));
  if (path === "/ui/audit" && method === "POST") return send(res, json(202, o.audits.start()));
  if (path === "/ui/reach" && reading) return send(res, json(200, o.reaches.current()));
  if (path === "/ui/reach" && method === "POST") return send(res, json(202, o.reaches.start()));
  if (!reading)
    return send(
      res,
      json(405, {
        error: {
          code: "forbidden",
          message: `${method} ${path}: the dashboard's listener is read-only; changes go through the engine's unix socket`,
        },
      }),
      { allow: "GET, HEAD" },
    );
  const started = performance.now();
  const reply = await route(o.engine, "GET", url, req.headers, "");
  send(res, reply);
  o.log(`dashboard: GET ${url} -> ${reply.status} (${(performance.now() - started).toFixed(1)} ms)`);
}

function send(res: ServerResponse, reply: Reply, headers: Record<string, string> = {}): void {
  res.writeHead(reply.status, {
    "content-type": reply.type ?? "application/json",
    "content-length": Buffer.byteLength(reply.body),
    "cache-control": "no-store",
    ...PAGE_HEADERS,
    ...headers,
  });
  res.end(reply.body);
}

function sendAsset(res: ServerResponse, assets: Map<string, Buffer>, name: string): void {
  const file = assets.get(name);
  if (!file) {
    send(res, json(404, { error: { code: "not-found", message: `no asset ${name}` } }));
    return;
  }
  res.writeHead(200, {
    "content-type": CONTENT_TYPES[extname(name)] ?? "application/octet-stream",
    "content-length": file.length,
    "cache-control": "no-store",
    ...PAGE_HEADERS,
  });
  res.end(file);
}
