/**
 * The CLI's way to the resident engine: when `netctx serve` runs, changes go through it (one writer, warm netlink
 * sockets and firewall); when it does not, the CLI does the work itself. A socket nobody answers on counts as absent.
 *
 * One HTTP/1.1 exchange written over node:net rather than node:http: the fast client (cli/fast-path.ts) has ~20 ms
 * over node's own start for a whole command, and loading and warming node:http's client (agent, parser, streams)
 * took several of them where a raw exchange takes about one (measured on a loaded 2-core machine: 13-75 ms against
 * 5-25 ms per request).
 */
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { type ErrorCode, NetctxError } from "../errors.ts";

interface ErrorBody {
  error?: { code?: string; message?: string; field?: string };
}

interface RawReply {
  status: number;
  text: string;
}

/**
 * The engine's answer (the one on config.socketPath), or undefined when no engine runs. Errors come back as the
 * engine's NetctxError.
 */
export async function callEngine<T>(
  socketPath: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<T | undefined> {
  if (!existsSync(socketPath)) return undefined;
  const payload = body === undefined ? "" : JSON.stringify(body);
  const reply = await exchange(socketPath, method, path, payload);
  if (!reply) return undefined;
  const parsed = JSON.parse(reply.text || "null") as T & ErrorBody;
  if (reply.status >= 400) {
    const e = parsed.error ?? {};
    throw new NetctxError(
      (e.code ?? "internal") as ErrorCode,
      e.message ?? `engine answered ${reply.status}`,
      e.field,
    );
  }
  return parsed;
}

/**
 * One request on its own connection (`Connection: close`: the reply ends where the engine closes it). Written, not
 * ended: node's HTTP server answers a half-closed connection's pending request with nothing.
 */
function exchange(
  socketPath: string,
  method: string,
  path: string,
  payload: string,
): Promise<RawReply | undefined> {
  const head =
    `${method} ${path} HTTP/1.1\r\nHost: netctx\r\nConnection: close\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(payload)}\r\n\r\n`;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(socketPath, () => socket.write(head + payload));
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("end", () => {
      try {
        resolve(parseReply(Buffer.concat(chunks)));
      } catch (err) {
        reject(err);
      }
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ECONNREFUSED" || err.code === "ENOENT") resolve(undefined);
      else reject(err);
    });
  });
}

/** Status line, headers, and the body as the engine sends it: Content-Length, chunked, or up to the close. */
function parseReply(raw: Buffer): RawReply {
  const split = raw.indexOf("\r\n\r\n");
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(raw.subarray(0, 32).toString("latin1"));
  if (split < 0 || !status) throw new NetctxError("internal", "the engine's reply is not HTTP");
  const headers = raw.subarray(0, split).toString("latin1").toLowerCase();
  let body = raw.subarray(split + 4);
  if (/\r\ntransfer-encoding:\s*chunked/.test(headers)) body = unchunk(body);
  else {
    const length = /\r\ncontent-length:\s*(\d+)/.exec(headers);
    if (length) body = body.subarray(0, Number(length[1]));
  }
  return { status: Number(status[1]), text: body.toString("utf8") };
}

function unchunk(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = body.indexOf("\r\n", at);
    if (eol < 0) break;
    const size = Number.parseInt(body.subarray(at, eol).toString("latin1"), 16);
    if (!(size > 0)) break;
    parts.push(body.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}
