/**
 * Each context's own /tmp and /var/tmp (systemd's PrivateTmp=), which `netctx exec` mounts over the host's
 * (netctx-enter.c --tmp). The host's /tmp is every host process's: a context writing there could connect to a host
 * daemon's socket (tmux and ssh-agent keep theirs in /tmp; a connect needs no write access to the directory, and
 * root's DAC override ignores the socket's mode), plant a file a host process trusts, or read another context's
 * files. They live under the state directory, which no context sees, are shared by every exec of one context (as
 * its processes expect), and go with the context: rm, or gc for one whose record is gone.
 */
import { chmodSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";

const ROOT = "tmp";
/** The two directories under a context's, as netctx-enter.c names them. */
const OWN = ["tmp", "var-tmp"];

export function privateTmpOf(stateDir: string, context: string): string {
  return join(stateDir, ROOT, context);
}

/** The context's directory, made on its first exec: root's alone (0700), the two inside sticky and open as /tmp is. */
export function ensurePrivateTmp(stateDir: string, context: string): string {
  const dir = privateTmpOf(stateDir, context);
  mkdirSync(join(stateDir, ROOT), { recursive: true, mode: 0o700 });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const own of OWN) {
    const path = join(dir, own);
    mkdirSync(path, { recursive: true });
    // mkdir's mode goes through the umask, which would take the world's write bit.
    chmodSync(path, 0o1777);
  }
  return dir;
}

/** Gone with the context; missing is fine. Symlinks a context left are removed, never followed. */
export function removePrivateTmp(stateDir: string, context: string): void {
  rmSync(privateTmpOf(stateDir, context), { recursive: true, force: true });
}

/** The contexts that have a directory here (gc compares them with the records). */
export function privateTmpContexts(stateDir: string): string[] {
  try {
    return readdirSync(join(stateDir, ROOT));
  } catch {
    return [];
  }
}
