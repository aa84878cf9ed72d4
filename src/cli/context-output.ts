/** What create, ls, inspect and rm print, shared by the full CLI (context.ts) and the fast client (fast-path.ts). */
import type { ContextView } from "../engine/views.ts";
import { notFound } from "../errors.ts";
import { printJson, printTable, type removedNames } from "./output.ts";

export function printCreated(view: ContextView, json: boolean | undefined): void {
  if (json) printJson(view);
  else console.log(view.name);
}

export function printContextList(views: ContextView[], json: boolean | undefined): void {
  if (json) {
    printJson(views);
    return;
  }
  printTable(
    ["NAME", "LEVEL", "STATUS", "NETWORKS", "ADDRESSES", "LABELS"],
    views.map((v) => [
      v.name,
      v.level,
      v.status,
      v.networks.join(","),
      v.addresses.join(","),
      Object.entries(v.labels ?? {})
        .map(([k, val]) => `${k}=${val}`)
        .join(","),
    ]),
  );
}

/** One name of `rm A B C`: printed when it went, a note or an error (forEachName's line) when it was not there. */
export function reportRemoved(
  name: string,
  removed: boolean,
  ignore: boolean | undefined,
  out: ReturnType<typeof removedNames>,
): void {
  if (removed) out.removed(name);
  else if (ignore) console.error(`note: context "${name}" does not exist; nothing to remove`);
  else throw notFound("context", name);
}
