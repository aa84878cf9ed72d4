/** netctx's version: package.json's, read where the CLI runs (from src/ or from dist/'s bundles alike). */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../package-root.ts";

export function netctxVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version: string })
    .version;
}
