/** Terminal output: aligned tables for people, JSON for programs. */
import { errorLine } from "../errors.ts";
import { formatTable } from "../text-table.ts";
import { CliExit } from "./exit.ts";

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printTable(header: string[], rows: string[][]): void {
  process.stdout.write(`${formatTable(header, rows)}\n`);
}

/** What the kernel, the file system or SQLite say when a caller lacks root's rights. */
const DENIED =
  /\b(EPERM|EACCES)\b|operation not permitted|permission denied|unable to open database file|readonly database/i;

/**
 * The one line the CLI prints for an error. Run by somebody else than root, a refusal of the kernel or of the state
 * directory says so first, in plain words, rather than a bare EPERM.
 */
export function cliErrorLine(err: unknown): string {
  const line = errorLine(err);
  if (process.geteuid?.() !== 0 && DENIED.test(line))
    return `netctx needs root (it changes the host's network and its state directory): ${line}`;
  return line;
}

/**
 * A command's failure as the CLI reports it (main.ts and the fast client): one line, the stack with NETCTX_DEBUG.
 * Returns the exit status.
 */
export function reportFailure(err: unknown): number {
  const reason = err instanceof CliExit ? err.reason : err;
  process.stderr.write(`error: ${cliErrorLine(reason)}\n`);
  if (process.env.NETCTX_DEBUG && reason instanceof Error) process.stderr.write(`${reason.stack}\n`);
  return err instanceof CliExit ? err.exitCode : 1;
}

/**
 * Run `each` for every name, as `docker rm A B C` does: a name that fails (missing, refused) is reported on its own
 * line and the others still go; the command then exits 1.
 */
export async function forEachName(
  names: readonly string[],
  each: (name: string) => Promise<void>,
): Promise<void> {
  for (const name of names) {
    try {
      await each(name);
    } catch (err) {
      process.stderr.write(`error: ${cliErrorLine(err)}\n`);
      process.exitCode = 1;
    }
  }
}

/**
 * What `rm A B C` prints of the names that went: a line each, or with --json one `{"removed": [...]}` once all are
 * done (notes and errors stay lines on stderr either way).
 */
export function removedNames(json: boolean | undefined): { removed(name: string): void; end(): void } {
  const names: string[] = [];
  return {
    removed: (name) => (json ? names.push(name) : console.log(name)),
    end: () => {
      if (json) printJson({ removed: names });
    },
  };
}

/** commander helper for options that may be given several times. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
