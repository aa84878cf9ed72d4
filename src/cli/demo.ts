/** netctx demo */
import type { Command } from "commander";
import { runDemo } from "../demo/demo.ts";
import { rerunInSandbox } from "../demo/run-sandboxed.ts";
import { insideSandbox } from "../sandbox.ts";

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description("build a scene of contexts in a throwaway host namespace, show it working, and remove it")
    .action(async () => {
      if (!insideSandbox()) {
        process.exitCode = rerunInSandbox();
        return;
      }
      process.exitCode = (await runDemo()) ? 0 : 1;
    });
}
