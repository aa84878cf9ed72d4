/**
 * Who may use the dashboard's TCP listener. The unix socket trusts its file mode and the caller's SO_PEERCRED
 * (api/caller.ts); over TCP neither exists, so every request proves it holds the listener's token: as the cookie
 * that opening `/?token=TOKEN` sets, or as `Authorization: Bearer TOKEN` (scripts, Prometheus).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";

export const COOKIE_NAME = "netctx_token";

/** 32 random bytes, URL-safe: what a loopback listener without --token-file prints once. */
export function generateToken(): string {
  return randomBytes(32).toString("base64url");
}

export type Admission =
  | { kind: "allowed" }
  /** `/?token=TOKEN` with the right token: set the cookie and send the browser to `/`, the token out of its URL. */
  | { kind: "login"; setCookie: string }
  | { kind: "refused" };

export class WebAuth {
  private readonly digest: Buffer;

  constructor(token: string) {
    this.digest = digestOf(token);
  }

  admit(req: IncomingMessage): Admission {
    const url = new URL(req.url ?? "/", "http://dashboard.invalid");
    const offered = url.pathname === "/" ? url.searchParams.get("token") : null;
    if (offered !== null)
      return this.matches(offered)
        ? {
            kind: "login",
            // HttpOnly: page scripts (and anything injected into them) cannot read it; SameSite=Strict: another
            // site's page cannot make the browser send it (no cross-site requests with the user's rights).
            setCookie: `${COOKIE_NAME}=${encodeURIComponent(offered)}; Path=/; HttpOnly; SameSite=Strict`,
          }
        : { kind: "refused" };
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1];
    if (bearer !== undefined && this.matches(bearer)) return { kind: "allowed" };
    const cookie = cookieValue(req.headers.cookie, COOKIE_NAME);
    if (cookie !== undefined && this.matches(cookie)) return { kind: "allowed" };
    return { kind: "refused" };
  }

  /**
   * Constant time: digests of equal length compared with timingSafeEqual, so neither the token's length nor how many
   * of its leading characters a guess got right shows in the answer's timing.
   */
  private matches(candidate: string): boolean {
    return timingSafeEqual(digestOf(candidate), this.digest);
  }
}

function digestOf(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}
