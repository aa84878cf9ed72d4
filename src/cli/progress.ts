/**
 * Progress of a long command (gc, audit, destroy; issue 21): nothing for its first 2 s, so a quick run prints what
 * it always printed; then on a terminal a bar (cli-progress, drawn on stderr), elsewhere a plain line on stderr per
 * step; with --json nothing at all. stdout keeps the command's own output either way.
 * NETCTX_PROGRESS_AFTER_MS moves the 2 s (tests set 0).
 */
import type { SingleBar } from "cli-progress";

export interface Progress {
  step(done: number, total: number, what: string): void;
  stop(): void;
}

const AFTER_MS = 2000;

const SILENT: Progress = { step: () => {}, stop: () => {} };

export async function startProgress(label: string, json: boolean | undefined): Promise<Progress> {
  if (json) return SILENT;
  const after = Number(process.env.NETCTX_PROGRESS_AFTER_MS ?? AFTER_MS);
  const started = performance.now();
  // Loaded before the command runs: gc's steps come from synchronous code, where an import cannot finish.
  const cliProgress = process.stderr.isTTY === true ? (await import("cli-progress")).default : undefined;
  let bar: SingleBar | undefined;
  return {
    step(done, total, what) {
      if (performance.now() - started < after) return;
      if (!cliProgress) {
        process.stderr.write(`${label}: [${done}/${total}] ${what}\n`);
        return;
      }
      if (!bar) {
        bar = new cliProgress.SingleBar(
          { format: `${label} {bar} {value}/{total} {what}`, stream: process.stderr },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, done, { what });
      }
      bar.setTotal(total);
      bar.update(done, { what });
    },
    stop() {
      bar?.stop();
      bar = undefined;
    },
  };
}
