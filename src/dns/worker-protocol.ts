/** The messages between the engine's main thread (service.ts) and the DNS worker (worker.ts). */
import type { DnsUpdate } from "./feed.ts";
import type { Resolution } from "./resolution.ts";

export interface WorkerSettings {
  domain: string;
  port: number;
  /** The host's resolv.conf (or a file a test wrote), read for upstream nameservers. */
  resolvConf: string;
  /** `serve --host-dns`: listeners for the host's own tools (server.ts). */
  hostListen?: { address: string; port: number }[];
}

export type ToWorker =
  | { type: "updates"; seq: number; updates: DnsUpdate[] }
  | { type: "resolve"; seq: number; name: string; network?: string }
  | { type: "listening"; seq: number }
  | { type: "stop" };

export type FromWorker =
  | { type: "ready" }
  | { type: "log"; line: string }
  | { type: "applied"; seq: number }
  | { type: "resolved"; seq: number; resolution: Resolution }
  | { type: "listening"; seq: number; addresses: string[] };
