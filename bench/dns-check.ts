/**
 * Runs the DNS section (bench/dns.ts) alone and prints it:
 *   node --import tsx bench/dns-check.ts [--quick] [--apply-only]
 * (--apply-only: only the apply cycles, without the rounds against aardvark-dns)
 */
import { dnsSection } from "./dns.ts";
import { runSectionAlone } from "./section-alone.ts";

await runSectionAlone("dns", dnsSection);
