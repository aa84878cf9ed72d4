/** netctx command line: one file per command family; this file wires them and turns errors into one line. */
import { Command, CommanderError } from "commander";
import { errorLine } from "../errors.ts";
import { registerApply } from "./apply.ts";
import { registerAudit } from "./audit.ts";
import { registerCluster } from "./cluster.ts";
import { registerCni } from "./cni.ts";
import { useGlobalOptions } from "./config.ts";
import { registerContext } from "./context.ts";
import { registerDemo } from "./demo.ts";
import { registerGc } from "./gc.ts";
import { registerNetwork } from "./network.ts";
import { registerServe } from "./serve.ts";

// grpc-js (etcd3) passes an IP endpoint to TLS as its server name, which node deprecates (DEP0123) with a warning
// on stderr; etcd endpoints are IP addresses as often as not, and the warning broke the one-line error contract.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const code = typeof rest[0] === "object" ? (rest[0] as { code?: string } | null)?.code : rest[1];
  if (code !== "DEP0123") (emitWarning as (...a: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

const program = new Command("netctx")
  .description(
    "network contexts for Linux processes: l2 (own netns), l3 (own routing table), socket (bind filtering)",
  )
  .option("--state-dir <dir>", "state directory (default: $NETCTX_STATE_DIR or /var/lib/netctx)")
  .enablePositionalOptions()
  .showHelpAfterError(false)
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(str.split("\n")[0] + "\n") })
  .hook("preAction", (cmd) => {
    useGlobalOptions(cmd.opts<{ stateDir?: string }>().stateDir);
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

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // commander already printed its one line (or help / version, which are not errors)
    process.exit(err.exitCode);
  }
  process.stderr.write(`error: ${errorLine(err)}\n`);
  if (process.env.NETCTX_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  process.exit(1);
}
