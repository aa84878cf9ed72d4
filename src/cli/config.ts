/**
 * The CLI's settings: the environment, with the global options (--state-dir) over it, handed to everything a
 * command opens. The CLI is an edge: only here, in `serve` and in the CNI entry does netctx read process.env (see
 * config.ts).
 */
import { type Config, type ConfigOverrides, readConfig } from "../config.ts";

let globalOptions: ConfigOverrides = {};

/** main.ts, once the global options are parsed. */
export function useGlobalOptions(stateDir: string | undefined): void {
  globalOptions = { stateDir };
}

/** This run's settings; a command's own options (serve --socket) go over the global ones. */
export function cliConfig(own: ConfigOverrides = {}): Config {
  return readConfig(process.env, { ...globalOptions, ...own });
}

/** The state dir the user named (--state-dir, else NETCTX_STATE_DIR), or undefined for the default. */
export function namedStateDir(): string | undefined {
  return globalOptions.stateDir || process.env.NETCTX_STATE_DIR;
}
