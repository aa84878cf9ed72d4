/**
 * The netctx command tree: one file per command family registers its commands here. main.ts parses with it;
 * `completion` and `help` read it, so a command added later is completed and has its help page with no more work.
 */
import { Command, Option } from "commander";
import { NetctxError } from "../errors.ts";
import { registerApply } from "./apply.ts";
import { registerAudit } from "./audit.ts";
import { registerCluster } from "./cluster.ts";
import { registerCni } from "./cni.ts";
import { registerCompletion } from "./completion.ts";
import { useGlobalOptions } from "./config.ts";
import { registerContext } from "./context.ts";
import { registerDemo } from "./demo.ts";
import { registerGc } from "./gc.ts";
import { registerHelp } from "./help.ts";
import { registerNetwork } from "./network.ts";
import { registerPolicy } from "./policy.ts";
import { registerResolve } from "./resolve.ts";
import { registerServe } from "./serve.ts";
import { registerStats } from "./stats.ts";
import { netctxVersion } from "./version.ts";

export function buildProgram(): Command {
  const program = new Command("netctx")
    .description(
      "network contexts for Linux processes: l2 (own netns), l3 (own routing table), socket (bind filtering)",
    )
    .option(
      "--state-dir <dir>",
      "state directory (default: $NETCTX_STATE_DIR or /var/lib/netctx); also taken after the subcommand",
    )
    // package.json's version; bin/netctx's fast client prints the same without loading this file (fast-path.ts).
    .version(netctxVersion())
    .enablePositionalOptions()
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(str.split("\n")[0] + "\n") })
    .hook("preAction", (cmd, action) => {
      const before = cmd.opts<{ stateDir?: string }>().stateDir;
      const after = action === cmd ? undefined : action.opts<{ stateDir?: string }>().stateDir;
      // Two different stores named in one command: guessing which one was meant could act on the wrong store.
      if (before !== undefined && after !== undefined && before !== after)
        throw new NetctxError(
          "invalid",
          `--state-dir given twice with two directories: ${before} and ${after}`,
        );
      useGlobalOptions(after ?? before);
    });

  registerNetwork(program);
  registerApply(program);
  registerServe(program);
  registerContext(program);
  registerDemo(program);
  registerGc(program);
  registerCni(program);
  registerAudit(program);
  registerCluster(program);
  registerPolicy(program);
  registerResolve(program);
  registerStats(program);
  registerCompletion(program);
  registerHelp(program);
  acceptStateDirAfterSubcommands(program);
  return program;
}

/**
 * `netctx ls --state-dir X` and `netctx network ls --state-dir X` as podman takes its global options anywhere: every
 * leaf command takes --state-dir too (hidden from its help; the program's help tells it).
 */
function acceptStateDirAfterSubcommands(cmd: Command): void {
  for (const sub of cmd.commands) {
    if (sub.commands.length) acceptStateDirAfterSubcommands(sub);
    else sub.addOption(new Option("--state-dir <dir>", "state directory").hideHelp());
  }
}
