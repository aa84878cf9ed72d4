/** Terminal output: aligned tables for people, JSON for programs. */
import { errorLine } from "../errors.ts";
import { formatTable } from "../text-table.ts";

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

/** commander helper for options that may be given several times. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
