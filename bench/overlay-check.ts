/**
 * Runs the overlay section alone and prints it:
 *   node --import tsx bench/overlay-check.ts [--quick]
 */
import { overlaySection } from "./overlay.ts";
import { runSectionAlone } from "./section-alone.ts";

await runSectionAlone("ov", overlaySection);
