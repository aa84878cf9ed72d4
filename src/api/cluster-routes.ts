/**
 * The engine's cluster routes: GET /v1/cluster (status of every node) and DELETE /v1/cluster/nodes/NAME (forget).
 * GET /v1/cluster also carries the engine's overlay counts (engine/overlay.ts). Answered from etcd, asynchronously: each is bounded by the etcd client's 5 s (cluster/etcd.ts).
 */
import type { ClusterMember } from "../cluster/member.ts";
import type { OverlayEngine } from "../engine/overlay.ts";
import { invalid } from "../errors.ts";
import { errorReply, json, type Reply } from "./reply.ts";

export async function handleCluster(
  member: ClusterMember | undefined,
  method: string,
  path: string,
  overlay?: OverlayEngine,
): Promise<Reply> {
  const parts = path.split("?")[0]!.split("/").filter(Boolean);
  try {
    if (!member)
      throw invalid("etcd", "this engine is not a cluster member (start it with netctx serve --etcd URL)");
    // The overlay counts ride along: etcd requests per create is a number the bench reads.
    if (parts.length === 2 && method === "GET")
      return json(200, { ...(await member.status()), ...(overlay ? { overlay: overlay.statsView() } : {}) });
    if (parts.length === 4 && parts[2] === "nodes" && method === "DELETE")
      return json(200, await member.forget(decodeURIComponent(parts[3]!)));
    return json(404, { error: { code: "not-found", message: `no route ${method} ${path}` } });
  } catch (err) {
    return errorReply(err);
  }
}
