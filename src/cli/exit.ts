/** An error the CLI reports with an exit status of its own (`netctx exec`'s 125), not the usual 1. */
export class CliExit extends Error {
  constructor(
    readonly reason: unknown,
    readonly exitCode: number,
  ) {
    super(reason instanceof Error ? reason.message : String(reason));
    this.name = "CliExit";
  }
}
