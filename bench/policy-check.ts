/**
 * Runs the Policy section (bench/policy.ts) alone and prints it:
 *   node --import tsx bench/policy-check.ts [--quick]
 */
import { policySection } from "./policy.ts";
import { runSectionAlone } from "./section-alone.ts";

await runSectionAlone("pol", policySection);
