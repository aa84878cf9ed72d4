/**
 * The engine's routes for overlay networks (engine/overlay.ts), which wait on etcd: a network create or rm of a
 * cluster-scoped network, a context create on one (it may lease a block), a context rm on one (it may give a block
 * back), a network's blocks, and the overlay counts. Everything else returns undefined here and is answered by
 * server.ts's synchronous handler, as before; so are these requests on an engine that is not a cluster member,
 * whose engine code then refuses a cluster-scoped network in one line.
 */

import { cniFailureOf, runCni } from "../cni/run.ts";
import { type ApplyRequest, engineApply } from "../engine/apply-run.ts";
import { clusterScopedDriver, type OverlayEngine } from "../engine/overlay.ts";
import { contextView } from "../engine/views.ts";
import type { Host } from "../host.ts";
import { specOf } from "../levels/driver.ts";
import { errorReply, json, type Reply } from "./reply.ts";

/** Blocks one apply may lease at most (each try leases one; a plain create leases up to 4). */
const APPLY_LEASES = 64;

export function handleOverlay(
  overlay: OverlayEngine | undefined,
  host: Host,
  method: string,
  path: string,
  body: string,
  /** The CNI environment of a /v1/cni request (server.ts reads it from the headers). */
  cniEnv?: NodeJS.ProcessEnv,
): Promise<Reply> | undefined {
  if (!overlay) return undefined;
  const parts = path.split("?")[0]!.split("/").filter(Boolean);
  const [version, kind, rawName, verb] = parts;
  if (version !== "v1") return undefined;
  const name = rawName === undefined ? undefined : decodeURIComponent(rawName);
  const route = (): (() => Promise<Reply>) | undefined => {
    // A CNI ADD on an overlay network may need a block (BlockNeeded): leased here, then the ADD runs again.
    if (kind === "cni" && method === "POST" && cniEnv)
      return async () => {
        const out = await overlay
          .withBlocks(() => runCni(cniEnv, body, host, { throwBlockNeeded: true }))
          .catch((err: unknown) => cniFailureOf(cniEnv, body, err));
        return { status: out.code === 0 ? 200 : 500, body: out.stdout };
      };
    // An apply may need blocks of overlay networks (several: one per subnet, more when a block fills up).
    if (kind === "apply" && method === "POST" && !name)
      return async () =>
        json(
          200,
          await engineApply(host, parse(body) as unknown as ApplyRequest, (make) =>
            overlay.withBlocks(make, APPLY_LEASES),
          ),
        );
    if (kind === "overlay" && verb === undefined && method === "GET")
      return async () => json(200, overlay.statsView());
    if (kind === "networks" && method === "POST" && !name) {
      const input = parse(body);
      if (clusterScopedDriver(input["driver"]))
        return async () => json(201, await overlay.createNetwork(input));
      return undefined;
    }
    if (kind === "networks" && name && method === "DELETE" && host.store.getNetwork(name)?.cluster)
      return async () => json(200, await overlay.removeNetwork(name));
    if (kind === "networks" && name && verb === "blocks" && method === "GET")
      return async () => json(200, await overlay.networkBlocks(name));
    if (kind === "contexts" && method === "POST" && !name) {
      const input = parse(body);
      const networks = Array.isArray(input["networks"]) ? input["networks"] : [];
      if (overlay.namesClusterNetwork(networks))
        return async () => json(201, contextView(host, await overlay.createContext(input)));
      return undefined;
    }
    if (kind === "contexts" && name && method === "DELETE") {
      const found = host.store.getContext(name);
      if (!found) return undefined;
      if (!overlay.namesClusterNetwork(specOf(found).attachments.map((a) => a.network))) return undefined;
      const force = /[?&]force=(1|true)\b/.test(path);
      return async () => json(200, { removed: overlay.removeContext(name, force) });
    }
    return undefined;
  };
  let run: (() => Promise<Reply>) | undefined;
  try {
    run = route();
  } catch (err) {
    return Promise.resolve(errorReply(err));
  }
  if (!run) return undefined;
  return run().catch((err: unknown) => errorReply(err));
}

/** A JSON object body; anything else is left to the synchronous handler, which refuses it as it always did. */
function parse(body: string): Record<string, unknown> {
  try {
    const value = JSON.parse(body || "{}") as unknown;
    return value && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : {};
  } catch {
    return {};
  }
}
