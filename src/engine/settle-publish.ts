/**
 * gc and repair for published ports: re-publish what a ready context lost (`nft flush ruleset`, a rebuilt table)
 * and drop map elements that no context owns (a crash between the nft change and the record's removal).
 */
import { publishContext, publishDrift, unpublishContext } from "../firewall/publish.ts";
import type { Host } from "../host.ts";
import { specOf } from "../levels/driver.ts";
import type { ContextRecord } from "../state/store.ts";
import { publishTarget } from "./context-extras.ts";

/** Record a gc action and run it (unless a dry run). */
export type Act = (action: string, object: string, reason: string, run: () => void) => void;

export function settlePublications(host: Host, contexts: ContextRecord[], act: Act): void {
  const ready = contexts.filter((c) => c.status === "ready" && (specOf(c).publish?.length ?? 0) > 0);
  // Contexts still being made or removed own their elements too: only records that are gone make strays.
  const wanted = ready.map((c) => ({
    context: c.name,
    published: specOf(c).publish ?? [],
    target: publishTarget(specOf(c)),
  }));
  const known = new Set(contexts.map((c) => c.name));
  const drift = publishDrift(wanted);
  for (const name of drift.stray.filter((n) => !known.has(n)))
    act("remove", `published ports of ${name}`, "no context owns them", () => unpublishContext(host, name));
  for (const w of wanted.filter((w) => drift.missing.includes(w.context)))
    act("add", `published ports of ${w.context}`, "its context is ready", () =>
      publishContext(host, w.context, w.published, w.target),
    );
}
