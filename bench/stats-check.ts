/**
 * Runs the Counters section (bench/counters.ts) alone and prints it:
 *   node --import tsx bench/stats-check.ts [--quick]
 */
import { countersSection } from "./counters.ts";
import { runSectionAlone } from "./section-alone.ts";

await runSectionAlone("cnt", countersSection);
