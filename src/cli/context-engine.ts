/**
 * create, ls, inspect and rm as requests to the resident engine, shared by the full CLI (context.ts) and the fast
 * client (fast-path.ts). Each answers undefined when no engine runs: the caller then does the work itself (the
 * full CLI) or hands the command to the full CLI (the fast client).
 */
import { callEngine } from "../api/client.ts";
import type { ContextView } from "../engine/views.ts";
import { labelsFromArgs } from "../model/labels.ts";
import { parseBandwidthArg } from "../model/rate.ts";
import type { CreateOptions } from "./context-commands.ts";

/** The engine's create input from the command line; a bad label or rate throws here, before any request. */
export function createInput(name: string, o: CreateOptions) {
  return {
    name,
    level: o.level,
    networks: o.network,
    ips: o.ip,
    ...(o.mac !== undefined ? { mac: o.mac } : {}),
    ...(o.ifname.length ? { ifnames: o.ifname } : {}),
    ...(o.route.length ? { routes: o.route } : {}),
    ...(o.publish.length ? { publish: o.publish } : {}),
    ...(o.bandwidth !== undefined ? { bandwidth: parseBandwidthArg(o.bandwidth) } : {}),
    ...(o.label.length ? { labels: labelsFromArgs("label", o.label) } : {}),
    ...(o.allowHostPort.length ? { allowHostPorts: o.allowHostPort } : {}),
    ...(o.alias.length ? { aliases: o.alias } : {}),
  };
}

export type CreateInput = ReturnType<typeof createInput>;

export function engineCreate(socketPath: string, input: CreateInput): Promise<ContextView | undefined> {
  return callEngine<ContextView>(socketPath, "POST", "/v1/contexts", input);
}

export function engineList(socketPath: string): Promise<ContextView[] | undefined> {
  return callEngine<ContextView[]>(socketPath, "GET", "/v1/contexts");
}

export function engineInspect(socketPath: string, name: string): Promise<ContextView | undefined> {
  return callEngine<ContextView>(socketPath, "GET", `/v1/contexts/${encodeURIComponent(name)}`);
}

/** Whether the context was there to remove, or undefined when no engine runs. */
export async function engineRemove(
  socketPath: string,
  name: string,
  force: boolean,
): Promise<boolean | undefined> {
  const reply = await callEngine<{ removed: boolean }>(
    socketPath,
    "DELETE",
    `/v1/contexts/${encodeURIComponent(name)}${force ? "?force=1" : ""}`,
  );
  return reply?.removed;
}
