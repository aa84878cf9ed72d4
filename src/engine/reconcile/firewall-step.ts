/**
 * The firewall's turn in the loop: hand what the records declare to the firewall owner and report its diff. The
 * owner (firewall/reconcile.ts) checks every part of our tables and fixes them in one nft transaction.
 */
import type { Host } from "../../host.ts";
import type { FirewallDeclarations } from "../../networks/ownership.ts";
import type { Act } from "./loop.ts";

export function reconcileFirewall(host: Host, want: FirewallDeclarations, act: Act, dryRun: boolean): void {
  host.firewall((fw) => {
    for (const a of fw.reconcile(want, { dryRun, publishCgroup: host.config.publishCgroup }))
      act(a.action, a.object, a.reason, () => {
        // applied by reconcile above, as one nft transaction; what it could not do fails this action
        if (a.error) throw a.error;
      });
  });
}
