/**
 * The host file system escapes, seen from the host: root inside writing into a host directory (host-file-write),
 * connecting to a host daemon's unix socket under /run or /tmp (host-daemon-socket: tmux keeps its server's in
 * /tmp/tmux-UID, a directory of root's alone), leaving a setuid file in its /tmp
 * (setuid-file: the context's own, state/private-tmp.ts, under the state directory on the host), opening the host's disk (block-device). What the auditor makes for them, what each probe is
 * told (escape-script.ts host_fs_probes), what the host finds afterwards, the verdicts, and the cleanup.
 *
 * "blocked" needs proof that the probe could have seen the escape: it saw the very directory the auditor made (its
 * inode), the auditor's own write there worked, the auditor's own connects answered before and after the probes,
 * the probe's plain file in /tmp showed up on the host where its /tmp lives, the auditor opened the disk itself.
 * A target the auditor cannot make (a read-only /var/lib or /run, a host without block devices) leaves its probe
 * out. Everything made here is removed by closeHostFs, or by the exit guard should the process end first.
 */
import {
  closeSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { privateTmpOf } from "../state/private-tmp.ts";
import { type Call, callText, type EscapeOutcome, type EscapeVerdict, said } from "./evidence.ts";
import { guardExit } from "./exit-guard.ts";
import type { Subject } from "./subjects.ts";

/** The probe's names in /tmp: one for chmod 04755, one for open(O_CREAT, 04755), one for a mknod'ed disk. */
interface TmpNames {
  chmod: string;
  create: string;
  node: string;
}

/** The names as the probe uses them, and the same files as the host sees them (the context's own /tmp). */
interface TmpFiles extends TmpNames {
  onHost: TmpNames;
}

/** What the auditor made on the host for one audit run. */
export interface HostFsScene {
  /** host-file-write: a fresh directory (a daemon's state directory stands in), its inode, the auditor's write. */
  dir?: { path: string; ino: number; control: Call };
  /** host-daemon-socket: listeners under /run and /tmp, the first line of every connection, the auditor's connect. */
  sockets: DaemonSocket[];
  /** block-device: the host's disk, its major:minor, the auditor's own read-only open. */
  block?: { path: string; dev: [number, number]; control: Call };
  /** By audited context: what its probe may leave in /tmp. */
  tmp: Map<string, TmpFiles>;
  /** Paths made here, removed at the end whatever happens. */
  made: string[];
  release: () => void;
}

/** A listener standing in for a host daemon's socket, what reached it, and the auditor's connect before the probes. */
interface DaemonSocket {
  path: string;
  seen: string[];
  control: string;
  before: Call;
  close: () => void;
}

/** What the probe program's host_fs_probes() gets. */
export interface HostFsParams {
  write?: { dir: string; name: string };
  sockets: { path: string }[];
  setuid: { chmod: string; create: string };
  block?: { path: string; dev: [number, number]; node: string };
}

/** What host_fs_probes() answers. */
export interface HostFsPhase1 {
  /** ino: the directory's inode as the probe sees it; dirError: why it could not stat it. */
  write?: Call & { ino?: number; dirError?: string };
  /** One per socket of the params, in their order. */
  sockets: Call[];
  setuid: { create: Call; chmod: Call; open: Call };
  /** listed: the block devices under its /dev; scanned: how many entries it looked at; opens[0]: the host's disk. */
  block?: { listed: string[]; scanned: number; error?: string; opens: Call[]; node: Call };
}

/** A path as the host sees it after the probes. */
interface FileSeen {
  exists: boolean;
  regular: boolean;
  setuid: boolean;
  text: string;
}

export interface HostFsSeen {
  written: Map<string, FileSeen>;
  setuid: Map<string, { chmod: FileSeen; create: FileSeen }>;
  /** The auditor's connect to each listener after the probes, in the scene's order. */
  socketsAfter: Call[];
}

function tmpFilesOf(runId: string, name: string, stateDir: string): TmpFiles {
  const names = (tmp: string): TmpNames => {
    const base = `${tmp}/netctx-audit-${runId}-${name}`;
    return { chmod: `${base}-suid-chmod`, create: `${base}-suid-open`, node: `${base}-disk` };
  };
  return { ...names("/tmp"), onHost: names(join(privateTmpOf(stateDir, name), "tmp")) };
}

function attempt(call: string, fn: () => void): Call {
  try {
    fn();
    return { call, ok: true };
  } catch (err) {
    return { call, ok: false, errno: (err as NodeJS.ErrnoException).code ?? (err as Error).message };
  }
}

/**
 * Every path made here and every name a probe may use in /tmp, removed; a failure is told, not thrown. The names
 * are this run's alone: a probe run without the sandbox (a check with the guards taken away) leaves them in the
 * host's /tmp, not in the context's.
 */
function removeAll(scene: HostFsScene): void {
  const names = (t: TmpNames) => [t.chmod, t.create, t.node];
  const paths = [...scene.made, ...[...scene.tmp.values()].flatMap((t) => [...names(t), ...names(t.onHost)])];
  for (const path of paths) {
    try {
      rmSync(path, { recursive: true, force: true });
    } catch (err) {
      console.error(`warning: audit could not remove ${path}: ${(err as Error).message}`);
    }
  }
}

/**
 * Make the targets. Never rejects: a target that cannot be made leaves its probe out. The exit guard is set first,
 * so whatever is made is covered from its first moment.
 */
export async function openHostFs(runId: string, audited: Subject[], stateDir: string): Promise<HostFsScene> {
  const scene: HostFsScene = {
    tmp: new Map(audited.map((s) => [s.name, tmpFilesOf(runId, s.name, stateDir)])),
    sockets: [],
    made: [],
    release: () => {},
  };
  scene.release = guardExit(() => removeAll(scene));
  const dir = makeDir(scene, `/var/lib/netctx-audit-${runId}`);
  if (dir) scene.dir = dir;
  const block = hostDisk();
  if (block) scene.block = block;
  const control = `netctx-audit-${runId}-control`;
  const daemon = await listenUnix(scene, `/run/netctx-audit-${runId}.sock`, control);
  if (daemon) scene.sockets.push(daemon);
  // As tmux makes its server's: a directory only root may enter, under the host's /tmp.
  const tmpDir = makeDir(scene, `/tmp/netctx-audit-${runId}-tmux`, 0o700);
  const tmux = tmpDir && (await listenUnix(scene, `${tmpDir.path}/default`, control));
  if (tmux) scene.sockets.push(tmux);
  return scene;
}

function makeDir(scene: HostFsScene, path: string, mode = 0o755): HostFsScene["dir"] {
  try {
    mkdirSync(path, { mode });
  } catch {
    return undefined;
  }
  scene.made.push(path);
  const control = attempt(`host: create ${path}/control`, () =>
    writeFileSync(`${path}/control`, "the auditor's own write", { flag: "wx" }),
  );
  return { path, ino: statSync(path).ino, control };
}

/**
 * The host's first block device that the auditor opens read-only: disks before loop, ram, zram, optical and floppy
 * ones. O_NONBLOCK, here and in the probe: an optical drive opens without waiting for its medium.
 */
function hostDisk(): HostFsScene["block"] {
  let names: string[];
  try {
    names = readdirSync("/sys/block").sort();
  } catch {
    return undefined;
  }
  const virtual = /^(loop|ram|zram|sr|fd)\d/;
  for (const name of [...names.filter((n) => !virtual.test(n)), ...names.filter((n) => virtual.test(n))]) {
    // sysfs spells a "/" in a device name as "!" (cciss!c0d0 is /dev/cciss/c0d0).
    const path = `/dev/${name.replaceAll("!", "/")}`;
    try {
      if (!statSync(path).isBlockDevice()) continue;
      const [major, minor] = readFileSync(`/sys/block/${name}/dev`, "utf8").trim().split(":").map(Number);
      if (!Number.isInteger(major) || !Number.isInteger(minor)) continue;
      const control = attempt(`host: open(${path}, O_RDONLY|O_NONBLOCK)`, () =>
        closeSync(openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)),
      );
      if (control.ok) return { path, dev: [major!, minor!], control };
    } catch {
      // Gone or unreadable: the next one.
    }
  }
  return undefined;
}

/** A pathname listener standing in for a host daemon's; it answers each connection's first line with "seen LINE". */
async function listenUnix(
  scene: HostFsScene,
  path: string,
  control: string,
): Promise<DaemonSocket | undefined> {
  if (existsSync(path)) return undefined;
  const seen: string[] = [];
  const conns = new Set<Socket>();
  const server = createServer((c) => {
    conns.add(c);
    c.on("close", () => conns.delete(c));
    let buf = "";
    c.setEncoding("utf8");
    c.on("error", () => {});
    c.on("data", (d: string) => {
      buf += d;
      const i = buf.indexOf("\n");
      if (i < 0) return;
      const line = buf.slice(0, i);
      seen.push(line);
      c.end(`seen ${line}\n`);
    });
  });
  scene.made.push(path);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => resolve());
    });
  } catch {
    server.close();
    return undefined;
  }
  server.on("error", () => {});
  // Connections are cut, not waited for: one that never sends its line must not hold the audit's end.
  const close = () => {
    server.close();
    for (const c of conns) c.destroy();
  };
  return { path, seen, control, close, before: await connectUnix(path, `${control}-before`) };
}

/** The auditor's own connect: ok only when the listener answered this very line. */
function connectUnix(path: string, line: string): Promise<Call> {
  const call = `host: connect(AF_UNIX, ${path})`;
  return new Promise((resolve) => {
    const c = createConnection(path);
    let answer = "";
    const done = (r: Omit<Call, "call">) => {
      clearTimeout(timer);
      c.destroy();
      resolve({ call, ...r });
    };
    const timer = setTimeout(() => done({ ok: false, errno: "no answer in 1 s" }), 1000);
    c.setEncoding("utf8");
    c.on("connect", () => c.write(`${line}\n`));
    c.on("data", (d: string) => {
      answer += d;
      if (answer.includes("\n")) done({ ok: answer.trim() === `seen ${line}`, value: answer.trim() });
    });
    c.on("error", (e: NodeJS.ErrnoException) => done({ ok: false, errno: e.code ?? e.message }));
  });
}

/** What one context's probe is told. */
export function hostFsParams(s: Subject, scene: HostFsScene): HostFsParams {
  const tmp = scene.tmp.get(s.name)!;
  const out: HostFsParams = { setuid: { chmod: tmp.chmod, create: tmp.create }, sockets: [] };
  if (scene.dir) out.write = { dir: scene.dir.path, name: `probe-${s.name}` };
  out.sockets = scene.sockets.map((d) => ({ path: d.path }));
  if (scene.block) out.block = { path: scene.block.path, dev: scene.block.dev, node: tmp.node };
  return out;
}

function look(path: string): FileSeen {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (!st) return { exists: false, regular: false, setuid: false, text: `${path} absent` };
  const kind = st.isFile() ? "file" : st.isSymbolicLink() ? "symlink" : "not a file";
  return {
    exists: true,
    regular: st.isFile(),
    // setgid as well: either makes the file run with someone else's ids.
    setuid: (st.mode & 0o6000) !== 0,
    text: `${path}: ${kind}, mode ${(st.mode & 0o7777).toString(8).padStart(4, "0")}, uid ${st.uid}`,
  };
}

/** After every probe's first phase: the host's view of what each probe tried, and the listener's second control. */
export async function observeHostFs(scene: HostFsScene, names: string[]): Promise<HostFsSeen> {
  const written = new Map<string, FileSeen>();
  const setuid = new Map<string, { chmod: FileSeen; create: FileSeen }>();
  for (const name of names) {
    if (scene.dir) written.set(name, look(`${scene.dir.path}/probe-${name}`));
    const tmp = scene.tmp.get(name);
    if (tmp) setuid.set(name, { chmod: look(tmp.onHost.chmod), create: look(tmp.onHost.create) });
  }
  const out: HostFsSeen = { written, setuid, socketsAfter: [] };
  out.socketsAfter = await Promise.all(scene.sockets.map((d) => connectUnix(d.path, `${d.control}-after`)));
  return out;
}

/** Remove everything made for the run (the probes are gone by now) and drop the exit guard. */
export function closeHostFs(scene: HostFsScene): void {
  for (const d of scene.sockets) d.close();
  removeAll(scene);
  scene.release();
}

const verdict = (possible: boolean, provenBlocked: boolean): EscapeVerdict =>
  possible ? "possible" : provenBlocked ? "blocked" : "inconclusive";

const refused = (c: Call | undefined, errnos: readonly string[]) =>
  c !== undefined && !c.ok && errnos.includes(c.errno ?? "");

/** A call that worked and whose answer shows a setuid or setgid mode (the probe says "mode 4755"). */
function specialMode(c: Call): boolean {
  const m = /mode ([0-7]{4})$/.exec(c.value ?? "");
  return c.ok && m !== null && (Number.parseInt(m[1]!, 8) & 0o6000) !== 0;
}

export function classifyHostFs(x: {
  s: Subject;
  token: string;
  e: HostFsPhase1;
  scene: HostFsScene;
  seen: HostFsSeen;
}): EscapeOutcome[] {
  const { s, e, scene, seen } = x;
  const out: EscapeOutcome[] = [];
  const add = (probe: EscapeOutcome["probe"], result: EscapeVerdict, evidence: string) =>
    out.push({ probe, result, evidence });

  const written = seen.written.get(s.name);
  if (scene.dir && e.write && written) {
    const c = e.write;
    const same = c.ino === scene.dir.ino;
    add(
      "host-file-write",
      verdict(
        c.ok || written.exists,
        refused(c, ["EROFS", "EACCES", "EPERM"]) && same && scene.dir.control.ok,
      ),
      `${said(c)}; the directory here: ${
        c.ino === undefined
          ? c.dirError
          : `inode ${c.ino}${same ? ", the host's" : `, the host's is ${scene.dir.ino}`}`
      }; host: ${written.text}; control: ${said(scene.dir.control)}`,
    );
  }

  if (scene.sockets.length && e.sockets.length === scene.sockets.length) {
    const each = scene.sockets.map((d, i) => {
      const c = e.sockets[i]!;
      const after = seen.socketsAfter[i];
      const reached = d.seen.includes(x.token);
      return {
        possible: c.ok || reached,
        proven:
          refused(c, ["ENOENT", "ECONNREFUSED", "EACCES", "EPERM"]) && d.before.ok && after?.ok === true,
        text: `${said(c)}; the listener ${reached ? "got its token" : "saw nothing from it"}; control: ${said(
          d.before,
        )} before, ${after ? callText(after) : "not tried"} after`,
      };
    });
    add(
      "host-daemon-socket",
      verdict(
        each.some((o) => o.possible),
        each.every((o) => o.proven),
      ),
      each.map((o) => o.text).join(" | "),
    );
  }

  const files = seen.setuid.get(s.name);
  if (files) {
    const { create, chmod, open } = e.setuid;
    const shared = create.ok && files.chmod.exists && files.chmod.regular;
    add(
      "setuid-file",
      verdict(
        files.chmod.setuid || files.create.setuid || specialMode(chmod) || specialMode(open),
        refused(chmod, ["EPERM"]) && refused(open, ["EPERM"]) && shared,
      ),
      `${said(create)}; ${said(chmod)}; ${said(open)}; host: ${files.chmod.text}; ${files.create.text}${
        create.ok && !files.chmod.exists ? " (the probe's /tmp is not the context's own)" : ""
      }`,
    );
  }

  if (scene.block && e.block) {
    const b = e.block;
    const more = b.listed.length > 5 ? ` and ${b.listed.length - 5} more` : "";
    add(
      "block-device",
      verdict(
        b.opens.some((o) => o.ok) || b.node.ok,
        b.listed.length === 0 &&
          b.scanned > 0 &&
          refused(b.opens[0], ["ENOENT", "EACCES", "EPERM"]) &&
          refused(b.node, ["EPERM", "EACCES", "EROFS"]) &&
          scene.block.control.ok,
      ),
      `its /dev: ${b.scanned} entries${b.error ? ` (${b.error})` : ""}, block devices: ${
        b.listed.length ? `${b.listed.slice(0, 5).join(" ")}${more}` : "none"
      }; ${[...b.opens, b.node].map(said).join("; ")}; control: ${said(scene.block.control)}`,
    );
  }
  return out;
}
