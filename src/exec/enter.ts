/**
 * `netctx exec` and the audit's probes start every command through dist/netctx-enter (netctx-enter.c): the level
 * says where the command runs and what root inside keeps (LevelDriver.execSandbox); this module adds what every
 * level hides (the engine's state and socket, other namespaces' handles) and builds the helper's argv.
 */
import { existsSync } from "node:fs";
import { isAbsolute, join, normalize } from "node:path";
import { invalid, NetctxError } from "../errors.ts";
import type { Host } from "../host.ts";
import { CAPABILITY, SOCKET_FAMILY } from "../kernel/capabilities.ts";
import { errnoName, execReplacing, strerror } from "../kernel/ffi.ts";
import type { ExecSandbox } from "../levels/driver.ts";
import { levelDriver } from "../levels/registry.ts";
import type { ContextRecord } from "../model/records.ts";
import { packageRoot } from "../package-root.ts";
import { ensurePrivateTmp } from "../state/private-tmp.ts";

const HELPER = join(packageRoot(), "dist", "netctx-enter");

/** Where `ip netns` keeps its handles: hidden too, though setns needs CAP_SYS_ADMIN, which no context keeps. */
const NETNS_DIRS = ["/run/netns", "/var/run/netns"];

/** What the caller adds to a context's sandbox. */
export interface ExecOptions {
  /** Paths that stay writable (the host's file system is read-only inside but for its own /tmp and /var/tmp). */
  writable?: readonly string[];
  /** Host paths kept in view, read-only, where the sandbox would cover them (under the host's /tmp, say). */
  readOnly?: readonly string[];
  /** The text of the context's own /etc/resolv.conf (its networks' DNS server); absent: the host's stays. */
  resolvConf?: string;
}

/** argv that runs `command` in the context's sandbox. */
export function contextExecArgv(
  host: Host,
  record: ContextRecord,
  command: readonly string[],
  options: ExecOptions = {},
): string[] {
  const hide = [host.store.dir, host.config.socketPath, ...NETNS_DIRS];
  const tmp = ensurePrivateTmp(host.store.dir, record.name);
  return enterArgv(levelDriver(record.level).execSandbox(record), { hide, tmp, ...options }, command);
}

export interface MountView extends ExecOptions {
  /** Paths covered (directories by an empty read-only tmpfs, files by /dev/null). */
  hide?: readonly string[];
  /** The context's own /tmp and /var/tmp (private-tmp.ts). */
  tmp: string;
}

/** argv that runs `command` in `box`, with the paths of `view` hidden or writable. */
export function enterArgv(box: ExecSandbox, view: MountView, command: readonly string[]): string[] {
  const writable = (view.writable ?? []).map((p) => checkHostPath("rw", p));
  const readOnly = (view.readOnly ?? []).map((p) => checkHostPath("ro", p));
  if (!existsSync(HELPER))
    throw new NetctxError(
      "unsupported",
      `netctx exec needs ${HELPER}, built by \`npm run build\` with a C compiler (cc): no sandbox, no exec`,
    );
  return [
    HELPER,
    ...(box.netns ? ["--netns", box.netns] : []),
    ...(box.cgroup ? ["--cgroup", box.cgroup] : []),
    "--keep-caps",
    box.keepCaps.map((c) => CAPABILITY[c]).join(","),
    "--families",
    box.families.map((f) => SOCKET_FAMILY[f]).join(","),
    "--tmp",
    view.tmp,
    "--scope-signals",
    ...(box.scopeAbstractUnix ? ["--scope-abstract-unix"] : []),
    ...(view.hide ?? []).flatMap((p) => ["--hide", p]),
    ...writable.flatMap((p) => ["--rw", p]),
    ...readOnly.flatMap((p) => ["--ro", p]),
    ...(view.resolvConf !== undefined ? ["--resolv-conf", view.resolvConf] : []),
    "--",
    ...command,
  ];
}

/** An existing absolute path below / for --rw or --ro (a writable "/" would undo the read-only view whole). */
function checkHostPath(field: "rw" | "ro", path: string): string {
  const parts = path.split("/");
  if (!isAbsolute(path) || parts.includes("..") || parts.includes("."))
    throw invalid(field, `"${path}" is not an absolute path without . or .. parts`);
  const clean = normalize(path).replace(/\/+$/, "");
  if (clean === "")
    throw invalid(
      field,
      field === "rw"
        ? "/ cannot be writable: name the directories below it"
        : "/ is in view already: name a path below it",
    );
  if (!existsSync(clean)) throw invalid(field, `${clean} does not exist`);
  return clean;
}

/** netctx-enter's exit status when the sandbox could not be built (netctx's own failure, as podman's 125). */
export const EXEC_SETUP_FAILED = 125;

/**
 * Become the helper (execve): `netctx exec`'s pid is then the helper's, which passes on every signal sent to it
 * (TERM, INT, HUP, QUIT, USR1, USR2, WINCH, CONT) and exits with the command's status. Forwarding from node
 * instead cannot tell a terminal's ^C, which already reaches the command with the whole foreground group, from a
 * `kill -INT`: the command would get a terminal's signals twice (a second SIGINT means "quit now" to many servers).
 * And a SIGKILLed netctx takes the command with it (the helper's PID 1 dies with its parent). Returns only on
 * failure, by throwing.
 */
export function execInto(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): never {
  const err = execReplacing(
    argv,
    Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`])),
  );
  throw new NetctxError("internal", `cannot start ${argv[0]}: ${errnoName(err)}: ${strerror(err)}`);
}
