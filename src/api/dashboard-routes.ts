/**
 * What the page reads every few seconds, from the records only. The engine's own listing (`GET /v1/contexts`,
 * `netctx ls`) and `inspect` also compare the whole kernel with the records to mark contexts "degraded": measured
 * 2-3 s and 5.8 s at 1000 contexts, during which the engine (one request at a time) answers nobody else. A page
 * refreshing every 5 s must not hold CNI calls up like that, so it reads the records here (a few ms at 1000) and the
 * live facts of the one context it shows (its MACs and shaping, not the drift check).
 */
import { contextView } from "../engine/views.ts";
import { notFound } from "../errors.ts";
import type { Host } from "../host.ts";
import { errorReply, json, type Reply } from "./reply.ts";

/** `GET /ui/contexts` and `GET /ui/contexts/NAME`; undefined for other paths. */
export function dashboardContexts(host: Host, path: string): Reply | undefined {
  const m = /^\/ui\/contexts(?:\/([^/]+))?$/.exec(path);
  if (!m) return undefined;
  try {
    if (m[1] === undefined)
      return json(
        200,
        host.store.listContexts().map((c) => contextView(host, c, false)),
      );
    const name = decodeURIComponent(m[1]);
    const record = host.store.getContext(name);
    if (!record) throw notFound("context", name);
    return json(200, contextView(host, record, true));
  } catch (err) {
    return errorReply(err);
  }
}
