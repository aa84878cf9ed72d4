/**
 * The NAT part's scripts: the element diff between the kernel and the model (with the table rebuilt first when
 * any part of it is missing or damaged), and the exact lines of one interface for the fast paths.
 */
import {
  desiredElements,
  type Elem,
  type Elements,
  elemText,
  type FirewallNetwork,
  type Model,
  parseCidr,
  partElements,
} from "./nat-elements.ts";
import { natListing } from "./nat-listing.ts";
import { NAT_SETS } from "./nat-objects.ts";
import { listedDirect } from "./overlay-direct-objects.ts";
import { includedParts, rebuildLines, tableHealthy } from "./parts.ts";
import type { TableListing } from "./tables.ts";

/**
 * The transaction that makes our inet table (the listing's) hold the model: the element diff, or the table rebuilt with the
 * model's elements (and the other parts' elements the listing holds). Empty when there is nothing to do.
 */
export function natScript(table: TableListing, model: Model, ensure: boolean): string {
  const desired = desiredElements(model);
  const parts = includedParts(table, ["nat"]);
  if (!tableHealthy(table, parts)) {
    const anything = [...desired.values()].some((m) => m.size > 0);
    if (!table.exists && !ensure && !anything) return "";
    // The direct-routing elements are not the registry's to derive (overlay-direct-objects.ts): kept as listed.
    return rebuildLines(table, parts, { nat: [...partElements(desired), ...listedDirect(table)] }).join("\n");
  }
  return natDiff(table.table.name, natListing(table).elements, desired).lines.join("\n");
}

/**
 * The element diff, set by set: the lines (deletes first: an element whose comment changed is deleted and re-added
 * within the same transaction) and the elements taken away and added, as `set element` without quotes.
 */
export function natDiff(
  table: string,
  present: Elements,
  desired: Elements,
): { lines: string[]; remove: string[]; add: string[] } {
  const T = `inet ${table}`;
  const lines: string[] = [];
  const remove: string[] = [];
  const add: string[] = [];
  for (const def of NAT_SETS) {
    const want = desired.get(def.name) ?? new Map<string, Elem>();
    const have = present.get(def.name) ?? new Map<string, Elem>();
    const del = [...have.values()].filter((e) => !want.has(e.key));
    const put = [...want.values()].filter((e) => !have.has(e.key));
    if (del.length) lines.push(`delete element ${T} ${def.name} { ${del.map((e) => e.text).join(", ")} }`);
    if (put.length) lines.push(`add element ${T} ${def.name} { ${put.map(elemText).join(", ")} }`);
    for (const e of del) remove.push(`${def.name} ${e.text.replaceAll('"', "")}`);
    for (const e of put) add.push(`${def.name} ${e.text.replaceAll('"', "")}`);
  }
  return { lines, remove, add };
}

/** The element lines of one interface of a network: `create` (the ifaces element; the rest `add`) or `delete`. */
export function interfaceScript(
  table: string,
  network: FirewallNetwork,
  ifname: string,
  op: "create" | "delete",
): string {
  const T = `inet ${table}`;
  const subnets = network.subnets.map((s, i) => parseCidr(s, `subnets[${i}]`));
  const desired = desiredElements({
    networks: new Map([[network.name, { subnets, nat: network.nat, internal: network.internal }]]),
    ifaces: new Map([[ifname, network.name]]),
  });
  const lines: string[] = [];
  // A registration also re-adds the network's own intra elements (a no-op when present): a table of an older
  // layout, without those sets, refuses the transaction and so gets rebuilt by the listing path.
  const sets = ["ifaces", "internal_ifs", "same_if", "local4", "local6"];
  for (const set of op === "create" ? [...sets, "intra4", "intra6"] : sets) {
    const elems = [...(desired.get(set)?.values() ?? [])];
    if (elems.length === 0) continue;
    const verb = op === "delete" ? "delete" : set === "ifaces" ? "create" : "add";
    const items = elems.map((e) => (op === "delete" ? e.text : elemText(e)));
    lines.push(`${verb} element ${T} ${set} { ${items.join(", ")} }`);
  }
  return lines.join("\n");
}
