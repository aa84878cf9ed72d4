/**
 * libnftables (the library behind the `nft` binary, shipped with it in Debian's libnftables1) called in-process
 * through koffi: the same parser and the same atomic transactions, without a fork and exec per change, which cost
 * 10-20 ms each and dominated creating and removing a context.
 */
import koffi from "koffi";
import { withSignalsBlocked } from "../kernel/ffi.ts";

const NFT_CTX_OUTPUT_JSON = 1 << 4;
const NFT_CTX_OUTPUT_TERSE = 1 << 11;

interface Lib {
  ctxNew: (flags: number) => unknown;
  ctxFree: (ctx: unknown) => void;
  bufferOutput: (ctx: unknown) => number;
  bufferError: (ctx: unknown) => number;
  outputBuffer: (ctx: unknown) => string;
  errorBuffer: (ctx: unknown) => string;
  setOutputFlags: (ctx: unknown, flags: number) => void;
  run: (ctx: unknown, cmd: string) => number;
}

let lib: Lib | null | undefined;

function load(): Lib | null {
  try {
    const so = koffi.load("libnftables.so.1");
    koffi.pointer("nft_ctx", koffi.opaque());
    return {
      ctxNew: so.func("nft_ctx *nft_ctx_new(uint32_t flags)"),
      ctxFree: so.func("void nft_ctx_free(nft_ctx *ctx)"),
      bufferOutput: so.func("int nft_ctx_buffer_output(nft_ctx *ctx)"),
      bufferError: so.func("int nft_ctx_buffer_error(nft_ctx *ctx)"),
      outputBuffer: so.func("const char *nft_ctx_get_output_buffer(nft_ctx *ctx)"),
      errorBuffer: so.func("const char *nft_ctx_get_error_buffer(nft_ctx *ctx)"),
      setOutputFlags: so.func("void nft_ctx_output_set_flags(nft_ctx *ctx, uint32_t flags)"),
      run: so.func("int nft_run_cmd_from_buffer(nft_ctx *ctx, const char *buf)"),
    };
  } catch {
    return null;
  }
}

/** Whether the library can be used here; when not, the nft binary serves. */
export function libnftablesAvailable(): boolean {
  if (lib === undefined) lib = load();
  return lib !== null;
}

/**
 * Run one nft command buffer (a script, or a listing: `-j`-style when json, without set elements when terse, as
 * `nft -t`) as the binary would.
 */
export function runNftBuffer(
  command: string,
  json: boolean,
  terse = false,
): { status: number; stdout: string; stderr: string } {
  if (!libnftablesAvailable()) throw new Error("libnftables is not available");
  const l = lib!;
  // A context per call: its output buffers then hold exactly this command's output.
  const ctx = l.ctxNew(0);
  try {
    l.bufferOutput(ctx);
    l.bufferError(ctx);
    const flags = (json ? NFT_CTX_OUTPUT_JSON : 0) | (terse ? NFT_CTX_OUTPUT_TERSE : 0);
    if (flags) l.setOutputFlags(ctx, flags);
    const rc = withSignalsBlocked(() => l.run(ctx, command));
    return { status: rc === 0 ? 0 : 1, stdout: l.outputBuffer(ctx) ?? "", stderr: l.errorBuffer(ctx) ?? "" };
  } finally {
    l.ctxFree(ctx);
  }
}
