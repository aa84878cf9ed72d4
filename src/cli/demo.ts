/** netctx demo */
import type { Command } from "commander";
import { runDemo } from "../demo/demo.ts";
import { rerunInSandbox } from "../demo/run-sandboxed.ts";
import { insideSandbox } from "../sandbox.ts";
import { cliConfig } from "./config.ts";

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description("build a scene of contexts in a throwaway host namespace, show it working, and remove it")
    .action(async () => {
      if (!insideSandbox(process.env)) {
        process.exitCode = rerunInSandbox(process.env);
        return;
      }
      process.exitCode = (await runDemo(cliConfig())) ? 0 : 1;
    });
}
