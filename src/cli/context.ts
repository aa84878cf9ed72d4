/** netctx create|ls|inspect|rm|exec */
import { readFileSync } from "node:fs";
import { type Command, CommanderError } from "commander";
import { callEngine } from "../api/client.ts";
import { contextResolvConf } from "../dns/resolv-conf.ts";
import { createContext, removeContext } from "../engine/contexts.ts";
import { contextResolver } from "../engine/dns-feed.ts";
import { type ContextView, contextView, contextViews, inspectView } from "../engine/views.ts";
import { conflict, notFound } from "../errors.ts";
import { contextExecArgv, EXEC_SETUP_FAILED, execInto } from "../exec/enter.ts";
import { labelsFromArgs } from "../model/labels.ts";
import { parseBandwidthArg } from "../model/publish.ts";
import { cliConfig } from "./config.ts";
import { CliExit } from "./exit.ts";
import { withHost } from "./host.ts";
import { collect, forEachName, printJson, printTable } from "./output.ts";

interface CreateOptions {
  level: string;
  network: string[];
  ip: string[];
  mac?: string;
  ifname: string[];
  route: string[];
  publish: string[];
  bandwidth?: string;
  label: string[];
  allowHostPort: string[];
  alias: string[];
  json?: boolean;
}

export function registerContext(program: Command): void {
  program
    .command("create")
    .description("create a network context")
    .argument("<name>")
    .requiredOption("--level <level>", "l2 | l3 | socket")
    .option("--network <name>", "network to join (repeatable)", collect, [])
    .option("--ip <addr>", "requested address (repeatable)", collect, [])
    .option("--mac <mac>", "static MAC of the first interface (l2)")
    .option(
      "--ifname <name>",
      "interface name inside the context, per network (l2; default eth0, eth1, ...)",
      collect,
      [],
    )
    .option("--route <route>", "extra route in `ip route` form (l3; repeatable)", collect, [])
    .option(
      "--publish <spec>",
      "publish a port: [HOSTIP:]HOSTPORT:PORT[/tcp|udp] (repeatable; IPv6 host address in [])",
      collect,
      [],
    )
    .option(
      "--bandwidth <rate>",
      "l2 rate limit: RATE (both ways) or IN/OUT, tc units (10mbit, 500kbit; - = none)",
    )
    .option(
      "--label <key=value>",
      "a label policy selectors match (repeatable; Kubernetes label syntax; netctx.*, cni.*, k8s.* are netctx's own)",
      collect,
      [],
    )
    .option(
      "--allow-host-port <port>",
      "l3/socket: let the context reach this host loopback port, PORT[/tcp|udp] (repeatable; the rest of 127.0.0.1/::1 is its own address)",
      collect,
      [],
    )
    .option("--alias <name>", "another DNS name the context answers to (repeatable)", collect, [])
    .option("--json", "print the context as JSON")
    .action(async (name: string, o: CreateOptions) => {
      const input = {
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
      const view =
        (await callEngine<ContextView>(cliConfig().socketPath, "POST", "/v1/contexts", input)) ??
        withHost((host) => contextView(host, createContext(host, input)));
      if (o.json) printJson(view);
      else console.log(view.name);
    });

  program
    .command("ls")
    .description("list contexts")
    .option("--json", "JSON output")
    .action((o: { json?: boolean }) => {
      withHost((host) => {
        const views = contextViews(host);
        if (o.json) return printJson(views);
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
      });
    });

  program
    .command("inspect")
    .description("show a context as JSON")
    .argument("<name>")
    .option("--json", "JSON output (the default)")
    .action((name: string) => {
      withHost((host) => {
        const record = host.store.getContext(name);
        if (!record) throw notFound("context", name);
        printJson(inspectView(host, record));
      });
    });

  program
    .command("rm")
    .description("remove contexts; a missing or refused one is reported, the others go")
    .argument("<name...>")
    .option("--force", "kill the processes still running in the context instead of refusing")
    .option("-i, --ignore", "a missing context is a note, not an error")
    .action((names: string[], o: { force?: boolean; ignore?: boolean }) => {
      const force = o.force === true;
      return forEachName(names, async (name) => {
        const remote = await callEngine<{ removed: boolean }>(
          cliConfig().socketPath,
          "DELETE",
          `/v1/contexts/${encodeURIComponent(name)}${force ? "?force=1" : ""}`,
        );
        const removed = remote
          ? remote.removed
          : withHost((host) => removeContext(host, name, { force }) !== undefined);
        if (removed) console.log(name);
        else if (o.ignore) console.error(`note: context "${name}" does not exist; nothing to remove`);
        else throw notFound("context", name);
      });
    });

  program
    .command("exec")
    .description(
      "run a command inside a context; netctx becomes the command's keeper, passes on the signals sent to it " +
        "(TERM, INT, HUP, QUIT, USR1, USR2, WINCH) and exits with the command's status",
    )
    .argument("<name>")
    .argument("<command...>")
    .option(
      "--rw <path>",
      "keep this path writable (the host's file system is read-only inside but for /tmp and /var/tmp; repeatable)",
      collect,
      [],
    )
    .passThroughOptions()
    .addHelpText(
      "after",
      `
Exit status (as podman's):
  N      the command's own exit status
  128+N  the command was ended by signal N (143 for SIGTERM), as a shell says it
  125    netctx itself failed: unknown context, context not ready, bad options, sandbox not built
  126    the command was found but could not be run (permission)
  127    the command was not found`,
    )
    // Commander's own refusals (unknown option, missing argument) are netctx's failures too: 125, not 1.
    .exitOverride((err) => {
      throw err.exitCode === 0 ? err : new CommanderError(EXEC_SETUP_FAILED, err.code, err.message);
    })
    .action(async (name: string, args: string[], o: { rw: string[] }) => {
      // commander keeps the "--" that separates our options from the command's
      const command = args[0] === "--" ? args.slice(1) : args;
      try {
        // The context's networks' DNS server goes into its resolv.conf only while an engine serves it: without one
        // the gateway answers nothing, and the host's resolvers are the better choice.
        const dns = await callEngine<EngineDns>(cliConfig().socketPath, "GET", "/v1/dns");
        const argv = withHost((host) => {
          const record = host.store.getContext(name);
          if (!record) throw notFound("context", name);
          // A context being made may not be guarded yet (apply guards a batch at its end), one being removed is
          // going: either way nothing of the user's should start in it.
          if (record.status !== "ready")
            throw conflict("name", `context "${name}" is ${record.status}, not ready`);
          const resolver = dns?.serving ? contextResolver(host, record, dns) : undefined;
          const resolvConf = resolver && contextResolvConf(resolver, readHostResolvConf());
          return contextExecArgv(host, record, command, {
            writable: o.rw,
            ...(resolvConf !== undefined ? { resolvConf } : {}),
          });
        });
        execInto(argv, process.env);
      } catch (err) {
        throw new CliExit(err, EXEC_SETUP_FAILED);
      }
    });
}

/** What `GET /v1/dns` answers (api/server.ts). */
interface EngineDns {
  serving: boolean;
  domain: string;
  listening: string[];
}

/** The host's resolv.conf, for its search domains and options; none readable: none to keep. */
function readHostResolvConf(): string {
  try {
    return readFileSync("/etc/resolv.conf", "utf8");
  } catch {
    return "";
  }
}
