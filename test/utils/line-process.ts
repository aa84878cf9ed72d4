/**
 * A helper process the test talks to line by line: a probe printing one result a line, a server printing "ready",
 * a sniffer printing what it saw. Its stdin stays open; closing it is how the test ends one that waits on it.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { createInterface } from "node:readline";

export interface LineProcess {
  child: ChildProcessWithoutNullStreams;
  /** Every stdout line so far, taken by next() or not. */
  lines: string[];
  /** The next stdout line next() has not returned yet; throws with its stderr when the process ends first. */
  next(): Promise<string>;
  /** Resolves with the exit code once the process has ended. */
  exited: Promise<number | null>;
  /** Close stdin (ends one that waits on it) and wait for the exit. */
  stop(): Promise<number | null>;
}

export function startLines(argv: string[], opts: { env?: NodeJS.ProcessEnv } = {}): LineProcess {
  const child = spawn(argv[0]!, argv.slice(1), {
    stdio: ["pipe", "pipe", "pipe"],
    ...(opts.env ? { env: opts.env } : {}),
  });
  // A process that never reads stdin may be gone before the test closes it.
  child.stdin.on("error", () => {});
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  const lines: string[] = [];
  let taken = 0;
  let ended = false;
  const waiting: (() => void)[] = [];
  const wake = () => {
    for (const w of waiting.splice(0)) w();
  };
  createInterface({ input: child.stdout })
    .on("line", (line) => {
      lines.push(line);
      wake();
    })
    .on("close", () => {
      ended = true;
      wake();
    });
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  const next = async (): Promise<string> => {
    while (taken >= lines.length) {
      if (ended) {
        await exited;
        throw new Error(`${argv.slice(0, 4).join(" ")} ended early: ${stderr}`);
      }
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
    return lines[taken++]!;
  };
  return {
    child,
    lines,
    next,
    exited,
    stop() {
      child.stdin.end();
      return exited;
    },
  };
}
