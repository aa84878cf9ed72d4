/**
 * The `nft` binary as a library: a script goes in as one atomic transaction (`nft -f -` on stdin, so the kernel
 * applies all of it or none of it), listings come back as parsed JSON (`nft -j list ...`).
 * Failures become one-line NetctxErrors carrying nft's own first line of stderr and the offending command.
 */
import { spawnSync } from "node:child_process";
import { NetctxError } from "../errors.ts";
import { libnftablesAvailable, runNftBuffer } from "./libnftables.ts";

/** One object of `nft -j` output: `{ table: {...} }`, `{ set: {...} }`, `{ rule: {...} }`, ... */
export type NftObject = Record<string, NftValue>;
export type NftValue = string | number | boolean | null | NftValue[] | { [key: string]: NftValue };

export interface NftOptions {
  /** Path or name of the nft binary; default `nft` looked up in PATH. */
  nftPath?: string;
  /** Run the binary even where libnftables loads (config.nftBinary). */
  binary?: boolean;
  /** The binary's environment (config.toolEnv: PATH with the sbin directories); default this process's. */
  env?: Readonly<Record<string, string | undefined>>;
}

interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

export class Nft {
  readonly path: string;
  private readonly env: Readonly<Record<string, string | undefined>> | undefined;

  /** In-process libnftables unless the binary was asked for: by path (tests wrap it to count runs) or by config. */
  private readonly inProcess: boolean;

  constructor(opts: NftOptions = {}) {
    this.path = opts.nftPath ?? "nft";
    this.env = opts.env;
    this.inProcess = opts.nftPath === undefined && opts.binary !== true && libnftablesAvailable();
  }

  /** Apply a script as one transaction. An empty script is a no-op (no fork). */
  apply(script: string): void {
    if (script.trim() === "") return;
    const r = this.exec(["-f", "-"], script);
    if (r.status !== 0) {
      // libnftables 1.0.6 echoes the first line of a buffer under a kernel error, not the failing one; the binary
      // reading /dev/stdin names the right line. A failed batch changed nothing (atomic), so asking again is safe.
      if (this.inProcess && script.includes("\n")) {
        const again = this.execBinary(["-f", "-"], script);
        if (again.status === 0) return;
        throw nftError(again.stderr, script);
      }
      throw nftError(r.stderr, script);
    }
  }

  /**
   * Apply a script as one transaction if the kernel takes it; false when it does not (nothing changed then).
   * For fast paths whose failure only means "take the slow path": no error text, no binary re-run.
   */
  tryApply(script: string): boolean {
    if (script.trim() === "") return true;
    return this.exec(["-f", "-"], script).status === 0;
  }

  /**
   * `nft -j list <what...>` parsed into its objects (the metainfo object dropped).
   * Returns null when the listed object does not exist (ENOENT), so callers can treat "no table" as empty.
   */
  list(what: readonly string[]): NftObject[] | null {
    const r = this.exec(["-j", "list", ...what]);
    if (r.status !== 0) {
      if (/No such file or directory/.test(r.stderr)) return null;
      throw nftError(r.stderr, `list ${what.join(" ")}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(r.stdout);
    } catch {
      throw new NetctxError("internal", `nft: unparsable JSON from "nft -j list ${what.join(" ")}"`);
    }
    const objects = (parsed as { nftables?: unknown }).nftables;
    if (!Array.isArray(objects))
      throw new NetctxError("internal", "nft: JSON listing without an nftables array");
    return (objects as NftObject[]).filter((o) => !("metainfo" in o));
  }

  /**
   * `nft -t list <what...>` as text, set elements left out (so it costs the objects, not the elements); null when
   * the listed object does not exist. For what JSON does not show in nft 1.0.6: a table's comment.
   */
  listTerse(what: readonly string[]): string | null {
    const r = this.exec(["-t", "list", ...what]);
    if (r.status !== 0) {
      if (/No such file or directory/.test(r.stderr)) return null;
      throw nftError(r.stderr, `list ${what.join(" ")}`);
    }
    return r.stdout;
  }

  private exec(args: string[], input?: string): RunResult {
    if (this.inProcess) {
      const json = args[0] === "-j";
      const terse = args[0] === "-t";
      const command =
        args[args.length - 1] === "-" ? (input ?? "") : args.slice(json || terse ? 1 : 0).join(" ");
      return runNftBuffer(command, json, terse);
    }
    return this.execBinary(args, input);
  }

  private execBinary(args: string[], input?: string): RunResult {
    const r = spawnSync(this.path, args, {
      input: input ?? "",
      encoding: "utf8",
      ...(this.env === undefined ? {} : { env: this.env }),
      maxBuffer: 256 * 1024 * 1024,
    });
    if (r.error) {
      const code = (r.error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") {
        throw new NetctxError(
          "unsupported",
          `nftables: the nft binary "${this.path}" was not found (install the nftables package)`,
        );
      }
      throw new NetctxError("kernel", `nft: could not run "${this.path}": ${r.error.message}`);
    }
    if (r.signal) throw new NetctxError("kernel", `nft: killed by ${r.signal}`);
    return { status: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
  }
}

/**
 * nft reports a failed script as `/dev/stdin:LINE:COLS: Error: <text>`, then echoes the line and a caret line.
 * We keep the error text and append the script line it points at, all on one line.
 */
export function nftError(stderr: string, script: string): NetctxError {
  const lines = stderr.split("\n").filter((l) => l.trim() !== "");
  const first = lines[0] ?? "nft failed without a message";
  // The binary reads the script from /dev/stdin; libnftables names a buffer <cmdline>.
  const located = first.match(/^(?:\/dev\/stdin|<cmdline>):(\d+):[\d-]+:\s*(.*)$/);
  let text = first;
  let where = "";
  if (located) {
    text = located[2] ?? first;
    const line = script.split("\n")[Number(located[1]) - 1];
    if (line !== undefined) where = ` (in: ${line.trim()})`;
  } else if (lines[1] !== undefined && !/^\s*\^+\s*$/.test(lines[1])) {
    // libnftables prints no location, but echoes the offending line under the error
    where = ` (in: ${lines[1].trim()})`;
  } else if (!script.includes("\n") && script.trim() !== "") {
    where = ` (in: ${script.trim()})`;
  }
  const code = /Operation not supported|Protocol not supported/.test(text) ? "unsupported" : "kernel";
  return new NetctxError(code, `nft: ${text}${where}`);
}
