/** netctx command line: parses with the command tree (program.ts) and turns errors into one line. */
import { CommanderError } from "commander";
import { reportFailure } from "./output.ts";
import { buildProgram } from "./program.ts";

// grpc-js (etcd3) passes an IP endpoint to TLS as its server name, which node deprecates (DEP0123) with a warning
// on stderr; etcd endpoints are IP addresses as often as not, and the warning broke the one-line error contract.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const code = typeof rest[0] === "object" ? (rest[0] as { code?: string } | null)?.code : rest[1];
  if (code !== "DEP0123") (emitWarning as (...a: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

const program = buildProgram();

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // commander already printed its one line (or help / version, which are not errors)
    process.exit(err.exitCode);
  }
  process.exit(reportFailure(err));
}
