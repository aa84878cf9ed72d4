/**
 * The fast client (issue 21): `create`, `rm`, `ls` and `inspect` handed to the running engine, and `--version`,
 * without loading the engine's modules (koffi, SQLite, zod, the kernel layer) or commander. bin/netctx runs it
 * first, from its own bundle (dist/netctx-fast.cjs, node built-ins only; scripts/build.mjs refuses a package in
 * it), and loads the full CLI only when it declines: a command it does not read (help, other commands, anything
 * fast-argv.ts leaves out) or no engine answering. It prints only after the engine answered, with the full CLI's
 * own output and error functions (context-output.ts, output.ts), so the two paths print the same bytes.
 */
import type { ContextView } from "../engine/views.ts";
import type { CommandSpec } from "./command-spec.ts";
import { cliConfig, useGlobalOptions } from "./config.ts";
import { CREATE, type CreateOptions, INSPECT, LS, RM } from "./context-commands.ts";
import { createInput, engineCreate, engineInspect, engineList, engineRemove } from "./context-engine.ts";
import { printContextList, printCreated, reportRemoved } from "./context-output.ts";
import { type ParsedCommand, parseCommandArgv } from "./fast-argv.ts";
import { forEachName, printJson, removedNames, reportFailure } from "./output.ts";
import { netctxVersion } from "./version.ts";

/** Handled: the command ran (its exit status is set). Declined: the full CLI runs `argv` (this command line, or
 * what is left of it). */
export type FastOutcome = { handled: true } | { handled: false; argv?: string[] };

const DECLINED: FastOutcome = { handled: false };
const HANDLED: FastOutcome = { handled: true };

interface FastCommand {
  spec: CommandSpec;
  /** Runs the command through the engine; DECLINED before printing anything when no engine answers. */
  run(parsed: ParsedCommand, socketPath: string, rerun: (argv: string[]) => string[]): Promise<FastOutcome>;
}

/** One engine call whose answer is printed; undefined from the call: no engine, nothing printed. */
async function answered<T>(
  call: () => Promise<T | undefined>,
  print: (value: T) => void,
): Promise<FastOutcome> {
  let value: T | undefined;
  try {
    value = await call();
  } catch (err) {
    // The engine answered with an error (or broke off): the full CLI would print the same line.
    process.exitCode = reportFailure(err);
    return HANDLED;
  }
  if (value === undefined) return DECLINED;
  print(value);
  return HANDLED;
}

const COMMANDS: Record<string, FastCommand> = {
  create: {
    spec: CREATE,
    run(parsed, socketPath) {
      const o = parsed.opts as unknown as CreateOptions;
      // A bad label or rate: declined, so the full CLI reports it (it checks before asking any engine).
      let input: ReturnType<typeof createInput>;
      try {
        input = createInput(parsed.args[0] as string, o);
      } catch {
        return Promise.resolve(DECLINED);
      }
      return answered(
        () => engineCreate(socketPath, input),
        (view) => printCreated(view, o.json),
      );
    },
  },
  ls: {
    spec: LS,
    run(parsed, socketPath) {
      return answered(
        () => engineList(socketPath),
        (views) => printContextList(views, parsed.opts.json === true),
      );
    },
  },
  inspect: {
    spec: INSPECT,
    run(parsed, socketPath) {
      return answered<ContextView>(
        () => engineInspect(socketPath, parsed.args[0] as string),
        (view) => printJson(view),
      );
    },
  },
  rm: {
    spec: RM,
    async run(parsed, socketPath, rerun) {
      const names = parsed.args[0] as string[];
      const force = parsed.opts.force === true;
      const ignore = parsed.opts.ignore === true;
      const json = parsed.opts.json === true;
      const out = removedNames(json);
      // Names the engine was gone for: the first one, or (it stopped between two) the rest, go to the full CLI.
      let left: string[] | undefined;
      await forEachName(names, async (name) => {
        if (left) return void left.push(name);
        const removed = await engineRemove(socketPath, name, force);
        if (removed === undefined) left = [name];
        else reportRemoved(name, removed, ignore, out);
      });
      if (!left) {
        out.end();
        return HANDLED;
      }
      if (left.length === names.length) return DECLINED;
      // With --json the names removed so far are not told: the full CLI's answer covers the rest only.
      const flags = [
        ...(force ? ["--force"] : []),
        ...(ignore ? ["--ignore"] : []),
        ...(json ? ["--json"] : []),
      ];
      return { handled: false, argv: rerun(["rm", ...flags, ...left]) };
    },
  },
};

/** `--state-dir DIR` / `--state-dir=DIR` before the command: its position in argv and the value. */
function globalOptions(argv: readonly string[]): { at: number; stateDir: string | undefined } | undefined {
  let at = 0;
  let stateDir: string | undefined;
  while (at < argv.length && argv[at]!.startsWith("-")) {
    const token = argv[at]!;
    if (token.startsWith("--state-dir=")) {
      stateDir = token.slice("--state-dir=".length);
      at += 1;
    } else if (token === "--state-dir" && argv[at + 1] !== undefined && !argv[at + 1]!.startsWith("-")) {
      stateDir = argv[at + 1];
      at += 2;
    } else return undefined;
  }
  return { at, stateDir };
}

/** Run `argv` (the arguments after `netctx`) when this client can; see the header. */
export async function runFast(argv: readonly string[]): Promise<FastOutcome> {
  if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) {
    process.stdout.write(`${netctxVersion()}\n`);
    return HANDLED;
  }
  const global = globalOptions(argv);
  const name = global ? argv[global.at] : undefined;
  if (!global || name === undefined || !Object.hasOwn(COMMANDS, name)) return DECLINED;
  const command = COMMANDS[name]!;
  const parsed = parseCommandArgv(command.spec, argv.slice(global.at + 1));
  if (!parsed) return DECLINED;
  const after = parsed.opts.stateDir as string | undefined;
  // Two different stores named: the full CLI refuses it, in its words.
  if (global.stateDir !== undefined && after !== undefined && global.stateDir !== after) return DECLINED;
  const stateDir = after ?? global.stateDir;
  let socketPath: string;
  try {
    useGlobalOptions(stateDir);
    socketPath = cliConfig().socketPath;
  } catch {
    return DECLINED;
  }
  const rerun = (rest: string[]) => [...(stateDir !== undefined ? ["--state-dir", stateDir] : []), ...rest];
  return command.run(parsed, socketPath, rerun);
}
