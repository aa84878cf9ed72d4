/**
 * The fast client's reading of a command line against a CommandSpec, with commander's meaning for the forms it
 * takes: `--opt value`, `--opt=value`, flags, a listed short flag (`-i`), options between the arguments, a repeated
 * single-valued option keeping its last value. Anything else (help, an unknown or bundled option, `--`, a value that
 * looks like an option, a missing or an extra argument) is not read: the full CLI takes the command and says what
 * commander says, so the two never differ on what they both accept.
 */
import type { CommandSpec } from "./command-spec.ts";

export interface ParsedCommand {
  /** One entry per spec argument: a string, or a list for a variadic one. */
  readonly args: (string | string[] | undefined)[];
  /** commander's camelCase keys; flags true, repeatable options lists. */
  readonly opts: Record<string, string | string[] | true>;
}

interface OptionShape {
  long: string;
  short: string | undefined;
  key: string;
  takesValue: boolean;
  repeat: boolean;
  required: boolean;
}

/** Every leaf command takes --state-dir after its name too (main.ts adds it, hidden from help). */
const STATE_DIR: OptionShape = {
  long: "--state-dir",
  short: undefined,
  key: "stateDir",
  takesValue: true,
  repeat: false,
  required: false,
};

function shapeOf(o: CommandSpec["options"][number]): OptionShape {
  const long = o.flags.match(/--[a-z][a-z0-9-]*/)![0];
  return {
    long,
    short: o.flags.match(/(?:^|\s)(-[a-zA-Z])\b/)?.[1],
    key: long.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()),
    takesValue: /<[^>]+>/.test(o.flags),
    repeat: o.repeat === true,
    required: o.required === true,
  };
}

/** The command line after the command's name, read as commander would; undefined: leave it to the full CLI. */
export function parseCommandArgv(spec: CommandSpec, argv: readonly string[]): ParsedCommand | undefined {
  const shapes = [...spec.options.map(shapeOf), STATE_DIR];
  const opts: Record<string, string | string[] | true> = {};
  for (const s of shapes) if (s.repeat) opts[s.key] = [];
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (!token.startsWith("-") || token === "-") {
      positionals.push(token);
      continue;
    }
    const eq = token.startsWith("--") ? token.indexOf("=") : -1;
    const name = eq < 0 ? token : token.slice(0, eq);
    const shape = shapes.find((s) => s.long === name || s.short === name);
    if (!shape) return undefined;
    if (!shape.takesValue) {
      if (eq >= 0) return undefined;
      opts[shape.key] = true;
      continue;
    }
    let value: string | undefined;
    if (eq >= 0) value = token.slice(eq + 1);
    else {
      value = argv[++i];
      if (value === undefined || value.startsWith("-")) return undefined;
    }
    if (shape.repeat) (opts[shape.key] as string[]).push(value);
    else opts[shape.key] = value;
  }
  if (shapes.some((s) => s.required && opts[s.key] === undefined)) return undefined;
  const args: (string | string[] | undefined)[] = [];
  let next = 0;
  for (const arg of spec.args) {
    const required = arg.startsWith("<");
    if (arg.endsWith("...>") || arg.endsWith("...]")) {
      if (required && next >= positionals.length) return undefined;
      args.push(positionals.slice(next));
      next = positionals.length;
    } else {
      if (required && next >= positionals.length) return undefined;
      args.push(positionals[next++]);
    }
  }
  if (next < positionals.length) return undefined;
  return { args, opts };
}
