/**
 * `netctx help [TOPIC...]`: a command's help page (`netctx help network create` prints what
 * `netctx network create --help` does), and `--man` the whole tree as a man page. Both read the commander
 * definitions --help reads, so they cannot drift from it. Replaces commander's own help command, which printed
 * nothing and exited 1 for an unknown topic and ignored words after the first.
 */
import type { Command } from "commander";
import { invalid } from "../errors.ts";

export function registerHelp(program: Command): void {
  program.helpCommand(false);
  program
    .command("help")
    .description("a command's help page, as COMMAND --help prints it (netctx help network create)")
    .argument("[topic...]", "a command and its subcommands")
    .option("--man", "every command as one man page (roff): netctx help --man | man -l -")
    .action((topic: string[], o: { man?: boolean }) => {
      if (o.man) {
        process.stdout.write(manPage(program));
        return;
      }
      findCommand(program, topic).outputHelp();
    });
}

/** The command `words` name under `program`; an unknown one is a one-line error naming the known ones. */
export function findCommand(program: Command, words: readonly string[]): Command {
  let command = program;
  for (const [i, word] of words.entries()) {
    const next = command.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (!next) {
      const known = command.commands.map((c) => c.name()).join(", ");
      const shown = JSON.stringify(
        words
          .slice(0, i + 1)
          .join(" ")
          .slice(0, 60),
      );
      throw invalid("topic", `no command ${shown}; the topics here are: ${known}`);
    }
    command = next;
  }
  return command;
}

/** Every command below `command`, depth first, with the words that name it. */
export function commandPaths(command: Command, path: string[] = []): { path: string[]; command: Command }[] {
  return [{ path, command }, ...command.commands.flatMap((c) => commandPaths(c, [...path, c.name()]))];
}

/** roff escapes: a backslash, and a leading dot or quote that would read as a request. */
function roff(text: string): string {
  return text
    .replace(/\\/g, "\\e")
    .replace(/^([.'])/gm, "\\&$1")
    .replace(/-/g, "\\-");
}

/** The man page: one section per command with --help's usage, description, arguments and options. */
export function manPage(program: Command): string {
  const help = program.createHelp();
  const lines = [
    `.TH NETCTX 1 "" "netctx ${program.version() ?? ""}" "netctx manual"`,
    ".SH NAME",
    `netctx \\- ${roff(program.description())}`,
    ".SH SYNOPSIS",
    `.B netctx\n${roff(help.commandUsage(program).replace(/^netctx ?/, ""))}`,
    ".SH COMMANDS",
  ];
  for (const { path, command } of commandPaths(program).slice(1)) {
    if (command.commands.length && !command.options.length && !command.registeredArguments.length) {
      lines.push(`.SS netctx ${roff(path.join(" "))}`, roff(command.description()));
      continue;
    }
    // commandUsage names the parents too: "netctx network create [options] <name>".
    lines.push(`.SS ${roff(help.commandUsage(command))}`);
    lines.push(roff(command.description()));
    for (const arg of help.visibleArguments(command))
      lines.push(".TP", `.I ${roff(help.argumentTerm(arg))}`, roff(help.argumentDescription(arg)));
    for (const option of help.visibleOptions(command))
      lines.push(".TP", `.B ${roff(help.optionTerm(option))}`, roff(help.optionDescription(option)));
  }
  return `${lines.join("\n")}\n`;
}
