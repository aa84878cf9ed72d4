/**
 * A command's arguments and options as data, so commander (the full CLI) and the fast client (fast-argv.ts) read
 * one definition: an option added here is in `--help`, in completion and in the fast client's parser at once.
 * Imports no package at run time: the fast client bundles it.
 */
import type { Command } from "commander";
import { collect } from "./output.ts";

export interface OptionSpec {
  /** commander's flags: "--level <level>", "-i, --ignore". */
  readonly flags: string;
  readonly description: string;
  /** Given several times, collected into a list (default []). */
  readonly repeat?: boolean;
  /** commander's requiredOption. */
  readonly required?: boolean;
}

export interface CommandSpec {
  readonly name: string;
  readonly description: string;
  /** commander's argument syntax: "<name>", "<name...>", "[name...]". */
  readonly args: readonly string[];
  readonly options: readonly OptionSpec[];
}

/** The command `spec` describes, added to `program` without an action. */
export function addSpecCommand(program: Command, spec: CommandSpec): Command {
  const command = program.command(spec.name).description(spec.description);
  for (const arg of spec.args) command.argument(arg);
  for (const o of spec.options) {
    if (o.required) command.requiredOption(o.flags, o.description);
    else if (o.repeat) command.option(o.flags, o.description, collect, []);
    else command.option(o.flags, o.description);
  }
  return command;
}
