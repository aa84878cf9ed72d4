/** The dashboard's listener as a client sees it: requests with or without the token, and the engine started with it. */
import { type RunningEngine, startEngine } from "../utils/cli.ts";
import { waitFor } from "../utils/wait.ts";

export interface Dashboard {
  engine: RunningEngine;
  base: string;
  /** The URL the engine printed on stderr (a loopback listener without --token-file). */
  url: string;
  token: string;
  stderr(): string;
}

/** `netctx serve --listen ADDRESS:PORT` (loopback) with a generated token, once its URL is printed. */
export async function startDashboard(
  port: number,
  extra: string[] = [],
  address = "127.0.0.1",
): Promise<Dashboard> {
  let stderr = "";
  const engine = await startEngine({
    args: ["--listen", `${address}:${port}`, ...extra],
    onStderr: (chunk) => {
      stderr += chunk;
    },
  });
  await waitFor(() => /dashboard: http:\/\/\S+/.test(stderr), 10_000);
  const url = /dashboard: (http:\/\/\S+)/.exec(stderr)?.[1];
  if (!url) throw new Error(`no dashboard URL on stderr: ${stderr}${engine.log()}`);
  return {
    engine,
    base: `http://${address}:${port}`,
    url,
    token: new URL(url).searchParams.get("token")!,
    stderr: () => stderr,
  };
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  text: string;
}

export async function get(
  url: string,
  headers: Record<string, string> = {},
  method = "GET",
  body?: string,
): Promise<HttpAnswer> {
  const res = await fetch(url, {
    method,
    headers,
    redirect: "manual",
    ...(body !== undefined ? { body } : {}),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}
