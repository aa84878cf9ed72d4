/** netctx create|ls|inspect|rm|exec */
import { readFileSync } from "node:fs";
import { type Command, CommanderError } from "commander";
import { callEngine } from "../api/client.ts";
import { contextResolvConf } from "../dns/resolv-conf.ts";
import { createContext, removeContext } from "../engine/contexts.ts";
import { contextResolver } from "../engine/dns-feed.ts";
import { contextView, contextViews, inspectView } from "../engine/views.ts";
import { conflict, notFound } from "../errors.ts";
import { contextExecArgv, EXEC_SETUP_FAILED, execInto } from "../exec/enter.ts";
import { addSpecCommand } from "./command-spec.ts";
import { cliConfig } from "./config.ts";
import { CREATE, type CreateOptions, INSPECT, LS, RM } from "./context-commands.ts";
import { createInput, engineCreate, engineInspect, engineList, engineRemove } from "./context-engine.ts";
import { printContextList, printCreated, reportRemoved } from "./context-output.ts";
import { CliExit } from "./exit.ts";
import { withHost } from "./host.ts";
import { collect, forEachName, printJson, removedNames } from "./output.ts";

export function registerContext(program: Command): void {
  addSpecCommand(program, CREATE).action(async (name: string, o: CreateOptions) => {
    const input = createInput(name, o);
    const view =
      (await engineCreate(cliConfig().socketPath, input)) ??
      withHost((host) => contextView(host, createContext(host, input)));
    printCreated(view, o.json);
  });

  addSpecCommand(program, LS).action(async (o: { json?: boolean }) => {
    const views = (await engineList(cliConfig().socketPath)) ?? withHost((host) => contextViews(host));
    printContextList(views, o.json);
  });

  addSpecCommand(program, INSPECT).action(async (name: string) => {
    const view =
      (await engineInspect(cliConfig().socketPath, name)) ??
      withHost((host) => {
        const record = host.store.getContext(name);
        if (!record) throw notFound("context", name);
        return inspectView(host, record);
      });
    printJson(view);
  });

  addSpecCommand(program, RM).action(
    async (names: string[], o: { force?: boolean; ignore?: boolean; json?: boolean }) => {
      const force = o.force === true;
      const out = removedNames(o.json);
      await forEachName(names, async (name) => {
        const removed =
          (await engineRemove(cliConfig().socketPath, name, force)) ??
          withHost((host) => removeContext(host, name, { force }) !== undefined);
        reportRemoved(name, removed, o.ignore, out);
      });
      out.end();
    },
  );

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
      "keep this path writable (the host's file system is read-only inside but for the context's own /tmp and " +
        "/var/tmp; repeatable)",
      collect,
      [],
    )
    .option(
      "--ro <path>",
      "keep this host path in view, read-only, where the sandbox covers it: under the host's /tmp or /var/tmp " +
        "(the context has its own), or /run (repeatable; also NETCTX_EXEC_RO, paths separated by ':')",
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
    .action(async (name: string, args: string[], o: { rw: string[]; ro: string[] }) => {
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
            readOnly: [...o.ro, ...(process.env.NETCTX_EXEC_RO?.split(":").filter(Boolean) ?? [])],
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
