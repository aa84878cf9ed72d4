/** What `netctx resolve` shows, from the name tables: the host's view, which sees every served network. */
import { type NameTables, normalName } from "./tables.ts";

export interface Resolution {
  name: string;
  /** Per network where the name answers, its addresses there. */
  answers: { network: string; addresses: string[] }[];
  /** For an address: the names its PTR record gives. */
  names: string[];
}

export function resolveName(tables: NameTables, name: string, network?: string): Resolution {
  const networks = tables.servedNetworks().map((n) => n.name);
  const scope = network === undefined ? networks : networks.filter((n) => n === network);
  const answers = scope.flatMap((n) => {
    const found = tables.lookup(name, new Set([n]));
    return found.found ? [{ network: n, addresses: [...found.v4, ...found.v6] }] : [];
  });
  return { name: normalName(name), answers, names: tables.reverse(name, new Set(scope)).names };
}
