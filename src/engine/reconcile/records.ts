/**
 * The records' side of gc: operations a process left half-done (its op mark outlived it) are finished or rolled
 * back, ready contexts whose anchor is gone are dropped, and leases without a context are released. What the
 * kernel holds is the loop's (loop.ts); a network finished here gets its missing objects made there.
 */

import type { Host } from "../../host.ts";
import { specOf } from "../../levels/driver.ts";
import { levelDriver } from "../../levels/registry.ts";
import type { ContextRecord, NetworkRecord } from "../../model/records.ts";
import { networkDriver } from "../../networks/registry.ts";
import { privateTmpContexts, removePrivateTmp } from "../../state/private-tmp.ts";
import { rollBackConnect } from "../context-networks.ts";
import { ownerAlive } from "../intent.ts";
import { syncPolicyTables } from "../policy-sync.ts";
import type { Act } from "./loop.ts";

export function settleRecords(host: Host, act: Act, busy: string[]): void {
  settleContexts(host, act, busy);
  settleNetworks(host, act, busy);
}

function settleContexts(host: Host, act: Act, busy: string[]): void {
  const contexts = host.store.listContexts();
  for (const c of contexts) {
    if (c.status === "ready" && c.op?.op === "connect") {
      if (ownerAlive(c.op)) busy.push(`context ${c.name}`);
      else
        act("rollback", `context ${c.name}`, `network connect by process ${c.op.pid} did not finish`, () =>
          rollBackConnect(host, c),
        );
      continue;
    }
    if (c.status !== "ready") {
      const mark = c.op;
      if (ownerAlive(mark)) {
        busy.push(`context ${c.name}`);
        continue;
      }
      const who = mark ? `process ${mark.pid}` : "a process";
      if (c.status === "creating")
        act("rollback", `context ${c.name}`, `create by ${who} did not finish`, () => dropContext(host, c));
      else act("finish-rm", `context ${c.name}`, `rm by ${who} did not finish`, () => dropContext(host, c));
      continue;
    }
    const gone = levelDriver(c.level).anchorMissing(c);
    if (gone) act("drop", `context ${c.name}`, gone, () => dropContext(host, c));
  }
  const owners = new Set(contexts.map((c) => c.name));
  const orphans = new Set(
    host.store
      .leases()
      .filter((l) => !owners.has(l.owner))
      .map((l) => l.owner),
  );
  for (const owner of orphans)
    act("release", `leases of ${owner}`, "no context of that name", () => host.store.releaseAll(owner));
  for (const name of privateTmpContexts(host.store.dir).filter((n) => !owners.has(n)))
    act("remove", `private /tmp of ${name}`, "no context of that name", () =>
      removePrivateTmp(host.store.dir, name),
    );
}

/** Teardown tolerates missing objects; the record and its leases go only once the kernel side is gone. */
function dropContext(host: Host, c: ContextRecord): void {
  levelDriver(c.level).teardown(host, c.name, specOf(c));
  host.store.transaction(() => {
    host.store.releaseAll(c.name);
    host.store.deleteContext(c.name);
  });
  removePrivateTmp(host.store.dir, c.name);
  syncPolicyTables(host, [c.name]);
}

/**
 * A network rm whose process died is finished once no context uses the network; otherwise (and for a create) the
 * network is kept: its mark goes, and the loop makes whatever of it is missing.
 */
function settleNetworks(host: Host, act: Act, busy: string[]): void {
  const contexts = host.store.listContexts();
  for (const n of host.store.listNetworks()) {
    const mark = n.op;
    if (!mark) continue;
    if (ownerAlive(mark)) {
      busy.push(`network ${n.name}`);
      continue;
    }
    const clean = withoutMark(n);
    const used = contexts.some((c) => specOf(c).attachments.some((a) => a.network === n.name));
    const why = `network ${mark.op} by process ${mark.pid} did not finish`;
    if (mark.op === "remove" && !used) {
      act("finish-rm", `network ${n.name}`, why, () => {
        networkDriver(n.driver).destroy(host, clean);
        host.store.deleteNetwork(n.name);
      });
      continue;
    }
    const verb = mark.op === "remove" ? "keep" : "finish-create";
    act(verb, `network ${n.name}`, why, () => host.store.updateNetwork(clean));
  }
}

function withoutMark(n: NetworkRecord): NetworkRecord {
  const { op: _op, ...clean } = n;
  return clean;
}
