/**
 * What `serve --listen` and `--token-file` accept. Checked before the engine opens anything, so a bad value costs
 * one line and a non-zero exit and leaves nothing listening.
 */
import { readFileSync, statSync } from "node:fs";
import { isIP } from "node:net";
import { invalid, NetctxError } from "../errors.ts";

export interface ListenAddress {
  address: string;
  port: number;
  /** 127.0.0.0/8 or ::1: only processes on this host reach it (and an SSH tunnel to it). */
  loopback: boolean;
}

/** ADDR:PORT (IPv4) or [ADDR6]:PORT; the port is required (no default port on a listener that serves the API). */
export function parseListen(text: string): ListenAddress {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (!m || !isIP(m[1]!))
    throw invalid("listen", `"${text}" is not ADDR:PORT or [ADDR6]:PORT with an IP address and a port`);
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65_535)
    throw invalid("listen", `"${text}" has no port 1-65535`);
  const address = m[1]!;
  return { address, port, loopback: isLoopback(address) };
}

function isLoopback(address: string): boolean {
  if (isIP(address) === 4) return address.startsWith("127.");
  return address === "::1" || /^(0{0,4}:){7}0{0,3}1$/.test(address) || /^::ffff:127\./i.test(address);
}

/** Characters a token may hold: it travels in a URL and a cookie unescaped. */
const TOKEN_TEXT = /^[A-Za-z0-9._~-]{16,512}$/;

/**
 * The token in FILE: its content without the trailing newline. Refused when unreadable, empty, shorter than 16
 * characters, or readable by other users (as ssh refuses a private key others can read: the token is the listener's
 * only lock).
 */
export function readTokenFile(path: string): string {
  let text: string;
  try {
    if (statSync(path).mode & 0o004)
      throw invalid("token-file", `${path} is readable by other users (chmod 600 it)`);
    text = readFileSync(path, "utf8");
  } catch (err) {
    if (err instanceof NetctxError) throw err;
    throw invalid("token-file", `${path} cannot be read: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  const token = text.trim();
  if (token.length === 0) throw invalid("token-file", `${path} is empty`);
  if (!TOKEN_TEXT.test(token))
    throw invalid("token-file", `${path} does not hold one token of 16-512 characters A-Z a-z 0-9 . _ ~ -`);
  return token;
}
