/**
 * `netctx completion bash|zsh|fish`: shell completion generated from the command tree at run time, so a command or
 * option added later is completed without touching this file. zsh runs the bash script through its bashcompinit
 * layer (one generator, the same answers).
 */
import type { Command } from "commander";
import { invalid } from "../errors.ts";
import { commandPaths } from "./help.ts";

const SHELLS = ["bash", "zsh", "fish"] as const;

interface Node {
  /** The words that name the command ("" for netctx itself). */
  path: string;
  subcommands: string[];
  /** Every spelling of every option, help and version included. */
  options: string[];
  /** Options whose next word is their value (not a subcommand). */
  valued: string[];
  descriptions: Map<string, string>;
}

function nodes(program: Command): Node[] {
  return commandPaths(program).map(({ path, command }) => {
    const options: string[] = [];
    const valued: string[] = [];
    const descriptions = new Map<string, string>();
    const add = (spellings: (string | undefined)[], takesValue: boolean, description: string) => {
      for (const s of spellings)
        if (s) {
          options.push(s);
          if (takesValue) valued.push(s);
          descriptions.set(s, description);
        }
    };
    // Hidden options (the leaves' --state-dir) are still options a user may type.
    for (const o of command.options) add([o.short, o.long], o.required || o.optional, o.description);
    add(["-h", "--help"], false, "display help for command");
    for (const c of command.commands) descriptions.set(c.name(), c.description().split("\n")[0] ?? "");
    return {
      path: path.join(" "),
      subcommands: command.commands.map((c) => c.name()),
      options: [...new Set(options)],
      valued,
      descriptions,
    };
  });
}

/** A bash `case` over command paths, each arm echoing a word list. */
function bashCase(list: Node[], words: (n: Node) => string[]): string {
  return list.map((n) => `    ${JSON.stringify(n.path)}) echo ${shellWords(words(n))} ;;`).join("\n");
}

function shellWords(words: string[]): string {
  return `'${words.join(" ").replace(/'/g, "")}'`;
}

export function bashCompletion(program: Command): string {
  const list = nodes(program);
  const valued = list.flatMap((n) => n.valued.map((o) => `${n.path} ${o}`.trim()));
  return `# netctx completion for bash: source <(netctx completion bash)
_netctx_subcommands() {
  case "$1" in
${bashCase(list, (n) => n.subcommands)}
  esac
}
_netctx_options() {
  case "$1" in
${bashCase(list, (n) => n.options)}
  esac
}
_netctx_takes_value() {
  case "$1" in
${valued.map((v) => `    ${JSON.stringify(v)}) return 0 ;;`).join("\n")}
  esac
  return 1
}
# After "help", the words are a command path again: netctx help network cr<TAB>.
_netctx_below() {
  local path="$1"
  case "$path" in help | "help "*) path="\${path#help}"; path="\${path# }" ;; esac
  _netctx_subcommands "$path"
}
_netctx() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" word i
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    case "$word" in
      --*=*) continue ;;
      -*)
        if _netctx_takes_value "\${path:+$path }$word"; then ((i++)); fi
        continue ;;
    esac
    if [[ " $(_netctx_below "$path") " == *" $word "* ]]; then path="\${path:+$path }$word"; fi
  done
  local prev="\${COMP_WORDS[COMP_CWORD-1]}"
  if ((COMP_CWORD > 1)) && [[ "$prev" == -* ]] && _netctx_takes_value "\${path:+$path }$prev"; then
    COMPREPLY=($(compgen -f -- "$cur"))
  elif [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$(_netctx_options "$path")" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$(_netctx_below "$path")" -- "$cur"))
  fi
}
complete -F _netctx netctx
`;
}

export function zshCompletion(program: Command): string {
  return `#compdef netctx
# netctx completion for zsh: source <(netctx completion zsh)
(( $+functions[compdef] )) || { autoload -U +X compinit && compinit }
autoload -U +X bashcompinit && bashcompinit
${bashCompletion(program)}`;
}

function fishQuote(text: string): string {
  return `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

export function fishCompletion(program: Command): string {
  const lines = ["# netctx completion for fish: netctx completion fish | source", "complete -c netctx -f"];
  for (const n of nodes(program)) {
    const words = n.path ? n.path.split(" ") : [];
    // The command line names exactly this path: each word of it seen, none of its subcommands yet.
    const seen = words.map((w) => `__fish_seen_subcommand_from ${w}`);
    const notBelow = n.subcommands.length
      ? [`not __fish_seen_subcommand_from ${n.subcommands.join(" ")}`]
      : [];
    const condition = [...(words.length ? seen : ["__fish_use_subcommand"]), ...notBelow].join("; and ");
    for (const sub of n.subcommands)
      lines.push(
        `complete -c netctx -n ${fishQuote(condition)} -a ${fishQuote(sub)} -d ${fishQuote(n.descriptions.get(sub) ?? "")}`,
      );
    for (const option of n.options) {
      const flag = option.startsWith("--") ? `-l ${option.slice(2)}` : `-s ${option.slice(1)}`;
      const value = n.valued.includes(option) ? " -r" : "";
      lines.push(
        `complete -c netctx -n ${fishQuote(condition)} ${flag}${value} -d ${fishQuote(n.descriptions.get(option) ?? "")}`,
      );
    }
  }
  return `${lines.join("\n")}\n`;
}

export function registerCompletion(program: Command): void {
  program
    .command("completion")
    .description("print a shell completion script: source <(netctx completion bash), or zsh, or fish")
    .argument("<shell>", SHELLS.join(" | "))
    .action((shell: string) => {
      const scripts = { bash: bashCompletion, zsh: zshCompletion, fish: fishCompletion } as const;
      if (!(SHELLS as readonly string[]).includes(shell))
        throw invalid("shell", `"${shell.slice(0, 20)}" is not one of ${SHELLS.join(", ")}`);
      process.stdout.write(scripts[shell as (typeof SHELLS)[number]](program));
    });
}
