/** netctx resolve NAME [--network NET]: what the engine's DNS server answers for a context name or address. */
import type { Command } from "commander";
import { callEngine } from "../api/client.ts";
import { EMPTY_SNAPSHOT, snapshotChanges } from "../dns/feed.ts";
import type { Resolution } from "../dns/resolution.ts";
import { resolveName } from "../dns/resolution.ts";
import { NameTables } from "../dns/tables.ts";
import { dnsSnapshot } from "../engine/dns-feed.ts";
import { notFound } from "../errors.ts";
import { cliConfig } from "./config.ts";
import { withHost } from "./host.ts";
import { printJson } from "./output.ts";

export function registerResolve(program: Command): void {
  program
    .command("resolve")
    .description(
      "resolve a context name (NAME, alias, NAME.NETWORK.DOMAIN) or an address, as the DNS server answers",
    )
    .argument("<name>")
    .option("--network <net>", "only on this network")
    .option("--dns-domain <domain>", "the domain, when no engine runs to say it", "netctx")
    .option("--json", "JSON output")
    .action(async (name: string, o: { network?: string; dnsDomain: string; json?: boolean }) => {
      const query = new URLSearchParams({ name, ...(o.network !== undefined ? { network: o.network } : {}) });
      // The engine's own tables; without an engine, the same tables built from the store here.
      const found =
        (await callEngine<Resolution>(cliConfig().socketPath, "GET", `/v1/resolve?${query}`)) ??
        withHost((host) => {
          if (o.network !== undefined && !host.store.getNetwork(o.network))
            throw notFound("network", o.network);
          const tables = new NameTables(o.dnsDomain);
          for (const update of snapshotChanges(EMPTY_SNAPSHOT, dnsSnapshot(host))) tables.apply(update);
          return resolveName(tables, name, o.network);
        });
      if (o.json) return printJson(found);
      if (found.answers.length === 0 && found.names.length === 0)
        throw notFound("name", `${name}${o.network !== undefined ? ` on network ${o.network}` : ""}`);
      for (const a of found.answers)
        for (const address of a.addresses) console.log(`${address}\t${a.network}`);
      for (const n of found.names) console.log(n);
    });
}
