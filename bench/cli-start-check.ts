/**
 * Runs the CLI-start section (bench/cli-start.ts) alone and prints it:
 *   node --import tsx bench/cli-start-check.ts [--quick]
 */
import { cliStartSection } from "./cli-start.ts";
import { runSectionAlone } from "./section-alone.ts";

await runSectionAlone("cli", cliStartSection);
