/** netctx network create|ls|inspect|connect|disconnect|rm */

import { type Command, Option } from "commander";
import { callEngine } from "../api/client.ts";
import { connectContext, disconnectContext } from "../engine/context-networks.ts";
import { createNetwork, removeNetwork } from "../engine/networks.ts";
import { type ContextView, contextView } from "../engine/views.ts";
import { invalid, NetctxError, notFound } from "../errors.ts";
import type { Host } from "../host.ts";
import { specOf } from "../levels/driver.ts";
import { networkSwitches } from "../model/policy.ts";
import type { NetworkRecord } from "../model/records.ts";
import { shown } from "../net/ifname.ts";
import { networkDriver, networkDriverNames, networkDriverOptionKeys } from "../networks/registry.ts";
import { cliConfig } from "./config.ts";
import { withHost } from "./host.ts";
import { collect, forEachName, printJson, printTable, removedNames } from "./output.ts";

interface CreateOptions {
  driver: string;
  subnet: string[];
  gateway: string[];
  nat?: boolean;
  internal?: boolean;
  mtu?: string;
  antispoof: boolean;
  dns: boolean;
  opt: string[];
  parent?: string;
  block?: string;
  directRouting?: boolean;
  isolate?: boolean;
  defaultDeny?: boolean;
  json?: boolean;
}

export function registerNetwork(program: Command): void {
  const network = program.command("network").description("manage networks");

  network
    .command("create")
    .description("create a network")
    .argument("<name>")
    .option("--driver <driver>", networkDriverNames().join(" | "), "bridge")
    .option("--parent <dev>", "macvlan: the host device its contexts hang off")
    .option(
      "--block <prefixlen>",
      "overlay: the length of the IPv4 address blocks each node leases (default 24)",
    )
    .option(
      "--direct-routing",
      "overlay: route to nodes on this host's underlay segment without VXLAN (flannel's DirectRouting)",
    )
    .option("--subnet <cidr>", "subnet, v4 or v6 (repeatable)", collect, [])
    .option(
      "--gateway <ip>",
      "gateway address inside a subnet (repeatable; default: first host)",
      collect,
      [],
    )
    .addOption(new Option("--nat", "masquerade traffic leaving the host").conflicts("internal"))
    .option("--internal", "no egress: contexts reach only each other and the gateway")
    .option("--mtu <n>", "MTU (default: the MTU of the host's default-route device, else 1500)")
    .option("--no-antispoof", "let contexts send with addresses and MACs that are not theirs")
    .option("--isolate", "its contexts cannot reach each other, only the gateway and beyond (policy)")
    .option("--default-deny", "every context on it accepts only what a policy allows (policy)")
    .option("--no-dns", "no DNS server on the gateways: the network's contexts are not served names")
    .option(
      "-o, --opt <key=value>",
      `driver option (repeatable; ${networkDriverOptionKeys().join("; ") || "no driver takes any"})`,
      collect,
      [],
    )
    .option("--json", "print the network as JSON")
    .action(async (name: string, o: CreateOptions) => {
      const input = {
        name,
        driver: o.driver,
        subnets: o.subnet,
        gateways: o.gateway,
        nat: o.nat ?? false,
        internal: o.internal ?? false,
        antispoof: o.antispoof,
        ...(o.isolate ? { isolate: true } : {}),
        ...(o.defaultDeny ? { defaultDeny: true } : {}),
        ...(o.dns ? {} : { dns: false }),
        ...(o.mtu !== undefined ? { mtu: parseNumber("mtu", o.mtu) } : {}),
        ...(o.opt.length || o.parent !== undefined || o.block !== undefined || o.directRouting
          ? {
              options: {
                ...Object.fromEntries(o.opt.map(splitOption)),
                ...(o.parent !== undefined ? { parent: o.parent } : {}),
                ...(o.block !== undefined ? { block: o.block } : {}),
                ...(o.directRouting ? { "direct-routing": true } : {}),
              },
            }
          : {}),
      };
      const record =
        (await callEngine<NetworkRecord>(cliConfig().socketPath, "POST", "/v1/networks", input)) ??
        withHost((host) => createNetwork(host, input));
      if (o.json) printJson(record);
      else console.log(record.name);
    });

  network
    .command("ls")
    .description("list networks")
    .option("--json", "JSON output")
    .action((o: { json?: boolean }) => {
      withHost((host) => {
        const nets = host.store.listNetworks();
        if (o.json) return printJson(nets.map((n) => networkView(host, n)));
        printTable(
          ["NAME", "DRIVER", "SUBNETS", "GATEWAYS", "NAT", "INTERNAL", "MTU", "POLICY", "CONTEXTS"],
          nets.map((n) => {
            const v = networkView(host, n);
            return [
              n.name,
              n.driver,
              n.subnets.map((s) => s.cidr).join(","),
              n.subnets.map((s) => s.gateway ?? "").join(","),
              yesNo(n.nat),
              yesNo(n.internal),
              String(n.mtu),
              switchesText(v),
              String(v.contexts.length),
            ];
          }),
        );
      });
    });

  network
    .command("inspect")
    .description("show a network as JSON")
    .argument("<name>")
    .option("--json", "JSON output (the default)")
    .action(async (name: string) => {
      const view = withHost((host) => {
        const net = host.store.getNetwork(name);
        if (!net) throw notFound("network", name);
        return networkView(host, net);
      });
      // An overlay network's blocks, every node's, are in etcd: the engine (a cluster member) reads them.
      if (view.cluster) {
        try {
          const blocks = await callEngine<unknown[]>(
            cliConfig().socketPath,
            "GET",
            `/v1/networks/${encodeURIComponent(name)}/blocks`,
          );
          printJson({
            ...view,
            blocks: blocks ?? view.cluster.blocks.map((b) => ({ ...b, node: view.cluster!.node })),
          });
          return;
        } catch (err) {
          printJson({
            ...view,
            blocks: view.cluster.blocks.map((b) => ({ ...b, node: view.cluster!.node })),
            blocksError: err instanceof Error ? err.message : String(err),
          });
          return;
        }
      }
      printJson(view);
    });

  network
    .command("connect")
    .description("attach a running l2 context to one more network")
    .argument("<network>")
    .argument("<context>")
    .option("--ip <addr>", "requested address on the network (repeatable: one per subnet)", collect, [])
    .option("--json", "print the context as JSON")
    .action(async (name: string, context: string, o: { ip: string[]; json?: boolean }) => {
      const body = { context, ...(o.ip.length ? { ips: o.ip } : {}) };
      const view =
        (await callEngine<ContextView>(
          cliConfig().socketPath,
          "POST",
          `/v1/networks/${encodeURIComponent(name)}/connect`,
          body,
        )) ?? withHost((host) => contextView(host, connectContext(host, { ...body, network: name })));
      if (o.json) printJson(view);
      else console.log(view.name);
    });

  network
    .command("disconnect")
    .description("take a context off one of its networks (not its last)")
    .argument("<network>")
    .argument("<context>")
    .option("--json", "print the context as JSON")
    .action(async (name: string, context: string, o: { json?: boolean }) => {
      const view =
        (await callEngine<ContextView>(
          cliConfig().socketPath,
          "POST",
          `/v1/networks/${encodeURIComponent(name)}/disconnect`,
          { context },
        )) ?? withHost((host) => contextView(host, disconnectContext(host, { context, network: name })));
      if (o.json) printJson(view);
      else console.log(view.name);
    });

  network
    .command("rm")
    .description(
      "remove networks (no context may be on them); a missing or refused one is reported, the others go",
    )
    .argument("<name...>")
    .option("-i, --ignore", "a missing network is a note, not an error")
    .option("--json", 'print {"removed": [NAME...]} once all are done')
    .action(async (names: string[], o: { ignore?: boolean; json?: boolean }) => {
      const out = removedNames(o.json);
      await forEachName(names, async (name) => {
        try {
          const remote = await callEngine<NetworkRecord>(
            cliConfig().socketPath,
            "DELETE",
            `/v1/networks/${encodeURIComponent(name)}`,
          );
          out.removed((remote ?? withHost((host) => removeNetwork(host, name))).name);
        } catch (err) {
          if (!o.ignore || !(err instanceof NetctxError && err.code === "not-found")) throw err;
          console.error(`note: network "${name}" does not exist; nothing to remove`);
        }
      });
      out.end();
    });
}

function networkView(host: Host, net: NetworkRecord) {
  const contexts = host.store
    .listContexts()
    .filter((c) => specOf(c).attachments.some((a) => a.network === net.name))
    .map((c) => c.name);
  // Live from the kernel, what the driver tells (a bridge: whether contexts reach each other past it).
  const live = networkDriver(net.driver).inspect?.(host, net) ?? {};
  return {
    ...net,
    ...networkSwitches(net.options),
    contexts,
    leases: host.store.leases({ network: net.name }),
    ...live,
  };
}

/** `isolate,default-deny`, or `-` for a network with neither switch. */
function switchesText(v: { isolate: boolean; defaultDeny: boolean }): string {
  return [v.isolate ? "isolate" : "", v.defaultDeny ? "default-deny" : ""].filter(Boolean).join(",") || "-";
}

function yesNo(b: boolean): string {
  return b ? "yes" : "no";
}

export function parseNumber(field: string, text: string): number {
  if (!/^-?\d+$/.test(text.trim())) throw invalid(field, `${shown(text)} is not a whole number`);
  return Number(text);
}

function splitOption(kv: string): [string, string] {
  const i = kv.indexOf("=");
  return i < 0 ? [kv, "true"] : [kv.slice(0, i), kv.slice(i + 1)];
}
