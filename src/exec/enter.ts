/**
 * `netctx exec` and the audit's probes start every command through dist/netctx-enter (netctx-enter.c): the level
 * says where the command runs and what root inside keeps (LevelDriver.execSandbox); this module adds what every
 * level hides (the engine's state and socket, other namespaces' handles) and builds the helper's argv.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { apiSocketPath } from "../api/socket-path.ts";
import { NetctxError } from "../errors.ts";
import type { Host } from "../host.ts";
import { CAPABILITY, SOCKET_FAMILY } from "../kernel/capabilities.ts";
import type { ExecSandbox } from "../levels/driver.ts";
import { levelDriver } from "../levels/registry.ts";
import { packageRoot } from "../package-root.ts";
import type { ContextRecord } from "../state/store.ts";

const HELPER = join(packageRoot(), "dist", "netctx-enter");

/** Where `ip netns` keeps its handles: hidden too, though setns needs CAP_SYS_ADMIN, which no context keeps. */
const NETNS_DIRS = ["/run/netns", "/var/run/netns"];

/** argv that runs `command` in the context's sandbox. */
export function contextExecArgv(host: Host, record: ContextRecord, command: readonly string[]): string[] {
  const hide = [host.store.dir, apiSocketPath(host.store.dir), ...NETNS_DIRS];
  return enterArgv(levelDriver(record.level).execSandbox(record), hide, command);
}

/** argv that runs `command` in `box`, with the paths of `hide` covered. */
export function enterArgv(box: ExecSandbox, hide: readonly string[], command: readonly string[]): string[] {
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
    "--scope-signals",
    ...(box.scopeAbstractUnix ? ["--scope-abstract-unix"] : []),
    ...hide.flatMap((p) => ["--hide", p]),
    "--",
    ...command,
  ];
}
