/**
 * The CLI's way to the resident engine: when `netctx serve` runs, changes go through it (one writer, warm netlink
 * sockets and firewall); when it does not, the CLI does the work itself. A socket nobody answers on counts as absent.
 */
import { existsSync } from "node:fs";
import { request } from "node:http";
import { type ErrorCode, NetctxError } from "../errors.ts";

interface ErrorBody {
  error?: { code?: string; message?: string; field?: string };
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
  const reply = await new Promise<{ status: number; text: string } | undefined>((resolve, reject) => {
    const req = request(
      {
        socketPath,
        method,
        path,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          text += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 500, text }));
      },
    );
    req.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ECONNREFUSED" || err.code === "ENOENT") resolve(undefined);
      else reject(err);
    });
    req.end(payload);
  });
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
