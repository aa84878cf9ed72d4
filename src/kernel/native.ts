/**
 * netctx's own C helpers, built by scripts/build.mjs into dist/ where a C compiler is present. Each is optional: a
 * caller that gets null takes its slower path (netns-procs.ts) or a weaker one it says so of (netns.ts).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import koffi from "koffi";
import { packageRoot } from "../package-root.ts";

/**
 * A function of dist/LIBRARY by its C signature, loaded on first call of the getter (a command that never needs it
 * pays nothing), or null when the library was not built.
 */
export function distFunction<F>(library: string, signature: string): () => F | null {
  let fn: F | null | undefined;
  return () => {
    if (fn === undefined) {
      const path = join(packageRoot(), "dist", library);
      fn = existsSync(path) ? (koffi.load(path).func(signature) as F) : null;
    }
    return fn;
  };
}
