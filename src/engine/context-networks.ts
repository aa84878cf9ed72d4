/**
 * `network connect` and `network disconnect`: one network more or less for a made context (podman's verbs of the
 * same names). The new attachment is leased and recorded as create records one (contexts.ts: leaseAttachment), and
 * the level makes it through the same driver attach. Every refusal comes before any change; a failure half-way
 * undoes the link, its firewall elements, the lease and the record.
 */
import { existsSync } from "node:fs";
import { conflict, invalid, notFound } from "../errors.ts";
import type { Host } from "../host.ts";
import { Rtnl } from "../kernel/rtnl.ts";
import { type LevelDriver, specOf } from "../levels/driver.ts";
import { levelDriver } from "../levels/registry.ts";
import type { Attachment } from "../model/attachment.ts";
import { checkIfname, checkName, hostVethIfname } from "../model/names.ts";
import type { ContextRecord, OpMark } from "../model/records.ts";
import { ConnectInputSchema, DisconnectInputSchema, parseInput } from "../model/schemas.ts";
import { randomMac } from "../net/cidr.ts";
import { moveExtras } from "./context-extras.ts";
import { leaseAttachment, networkForLevel } from "./contexts.ts";
import { opMark, ownerAlive } from "./intent.ts";
import { syncPolicyTables } from "./policy-sync.ts";

type Changer = LevelDriver & Required<Pick<LevelDriver, "connect" | "disconnect">>;

/** Attach the context to one more network; returns its record as it is now. */
export function connectContext(host: Host, raw: unknown): ContextRecord {
  const input = parseInput(ConnectInputSchema, raw);
  const { found, level } = changeable(host, input.context, "connect");
  const net = networkForLevel(host, input.network, found.level);
  const record = host.store.transaction(() => {
    // Read again inside the transaction: another connect may have taken the network or the names meanwhile.
    const { found: now } = changeable(host, input.context, "connect");
    if (specOf(now).attachments.some((a) => a.network === net.name))
      throw conflict("network", `context "${now.name}" is already on network "${net.name}"`);
    const att = leaseAttachment(host, net, now.name, input.ips, { ...nextLink(host, now), mac: randomMac() });
    const updated = structuredClone(now);
    updated.spec.attachments.push(att);
    // Until the mark goes, gc leaves a live connect alone and rolls back one whose process died (reconcile/records.ts).
    updated.op = opMark("connect");
    host.store.updateContext(updated);
    return updated;
  });
  host.pause("connect:after-record");
  const before = specOf(found);
  const att = record.spec.attachments.at(-1)!;
  try {
    level.connect(host, record.name, record.spec, att);
    try {
      moveExtras(host, record.name, before, record.spec);
      host.pause("connect:after-extras");
    } catch (err) {
      undo(() => moveExtras(host, record.name, record.spec, before));
      undo(() => level.disconnect(host, record.name, record.spec, att));
      throw err;
    }
  } catch (err) {
    host.store.transaction(() => {
      host.store.release(net.name, record.name);
      const now = host.store.getContext(record.name);
      if (!now) return;
      now.spec.attachments = now.spec.attachments.filter((a) => a.network !== net.name);
      host.store.updateContext(endConnect(now, record.op, found.op));
    });
    throw err;
  }
  const done = host.store.transaction(() => {
    const now = host.store.getContext(record.name);
    if (!now) return record;
    const marked = endConnect(now, record.op, found.op);
    host.store.updateContext(marked);
    return marked;
  });
  syncPolicyTables(host, [record.name]);
  return done;
}

/**
 * The record with the connect's mark `mine` replaced by the one it had before (`was`, its create's); a mark another
 * operation set meanwhile (an rm --force) stays.
 */
function endConnect(now: ContextRecord, mine: OpMark | undefined, was: OpMark | undefined): ContextRecord {
  if (JSON.stringify(now.op) !== JSON.stringify(mine)) return now;
  const { op: _op, ...rest } = now;
  return was ? { ...rest, op: was } : rest;
}

/**
 * gc's rollback of a connect whose process died (its mark outlived it): the attachment it was making (the record's
 * last: connect appends, and refuses while a mark says one is under way) leaves the kernel, whatever of it exists,
 * then the record, and its lease is released.
 */
export function rollBackConnect(host: Host, record: ContextRecord): void {
  const level = levelDriver(record.level);
  const spec = specOf(record);
  const att = spec.attachments.at(-1);
  if (!att || spec.attachments.length < 2 || !level.disconnect) throw new Error("no connect to roll back");
  const before = { ...spec, attachments: spec.attachments.slice(0, -1) };
  moveExtras(host, record.name, spec, before);
  level.disconnect(host, record.name, spec, att);
  host.store.transaction(() => {
    host.store.release(att.network, record.name);
    const now = host.store.getContext(record.name);
    if (!now) return;
    now.spec.attachments = now.spec.attachments.filter((a) => a.network !== att.network);
    const { op: _op, ...unmarked } = now;
    host.store.updateContext(unmarked);
  });
}

/** Take the context off one of its networks (never its last); returns its record as it is now. */
export function disconnectContext(host: Host, raw: unknown): ContextRecord {
  const input = parseInput(DisconnectInputSchema, raw);
  const { found, level } = changeable(host, input.context, "disconnect");
  checkName("network", input.network, 32);
  const spec = specOf(found);
  const att = spec.attachments.find((a) => a.network === input.network);
  if (!att) {
    if (!host.store.getNetwork(input.network)) throw notFound("network", input.network);
    throw conflict("network", `context "${found.name}" is not on network "${input.network}"`);
  }
  if (spec.attachments.length === 1)
    throw conflict(
      "network",
      `"${input.network}" is the last network of context "${found.name}": a context keeps at least one (netctx rm removes the context)`,
    );
  const after = structuredClone(found);
  after.spec.attachments = spec.attachments.filter((a) => a !== att);
  level.disconnect(host, found.name, spec, att);
  host.pause("disconnect:after-detach");
  moveExtras(host, found.name, spec, after.spec);
  // The record last: until the link is gone it still declares it, so the address is not handed out again early.
  const done = host.store.transaction(() => {
    host.store.release(att.network, found.name);
    const now = host.store.getContext(found.name);
    if (!now) return after;
    now.spec.attachments = now.spec.attachments.filter((a) => a.network !== att.network);
    host.store.updateContext(now);
    return now;
  });
  syncPolicyTables(host, [found.name]);
  return done;
}

/** The context `name`, when it is made, ready and of a level whose networks can change. */
function changeable(host: Host, name: string, verb: string): { found: ContextRecord; level: Changer } {
  checkName("context", name);
  const found = host.store.getContext(name);
  if (!found) throw notFound("context", name);
  const level = levelDriver(found.level);
  if (!level.connect || !level.disconnect)
    throw invalid(
      "context",
      `context "${name}" is level ${found.level}${level.sharedStack ? ", which shares the host's devices" : ""}: only l2 contexts ${verb} networks`,
    );
  if (found.status !== "ready") throw conflict("context", `context "${name}" is ${found.status}, not ready`);
  if (found.op?.op === "connect")
    throw conflict(
      "context",
      ownerAlive(found.op)
        ? `context "${name}" is busy: a network connect by process ${found.op.pid} is under way`
        : `context "${name}" has a network connect by process ${found.op.pid} that did not finish (netctx gc rolls it back)`,
    );
  if (specOf(found).netnsExternal)
    throw conflict(
      "context",
      `context "${name}" lives in a container runtime's netns: ${verb} it through the runtime (CNI)`,
    );
  const gone = level.anchorMissing(found);
  if (gone) throw conflict("context", `context "${name}" cannot ${verb}: ${gone} (netctx gc drops it)`);
  return { found, level: level as Changer };
}

/**
 * The names of a new attachment's link: inside, the lowest free one of the series its interfaces follow (eth0,
 * eth1, ...; net0, net1, ... for a context made with --ifname net0), skipping names its netns already holds; on the
 * host, the lowest index of its veth names (model/names.ts) that no record and no link holds: a record made while
 * later veths were nc-NAME-1 may hold one, and a link of that name may be another store's.
 */
function nextLink(host: Host, record: ContextRecord): Pick<Attachment, "ifname" | "hostIfname"> {
  const spec = specOf(record);
  const inside = new Set(spec.attachments.map((a) => a.ifname));
  if (spec.netns && existsSync(spec.netns)) {
    const rtnl = Rtnl.open(spec.netns);
    try {
      for (const link of rtnl.linkList()) inside.add(link.name);
    } finally {
      rtnl.close();
    }
  }
  const series = /^(.*?)\d+$/.exec(spec.attachments[0]?.ifname ?? "")?.[1] || "eth";
  let n = 0;
  while (inside.has(`${series}${n}`)) n++;
  const ifname = `${series}${n}`;
  checkIfname("ifname", ifname);
  const held = new Set(
    host.store.listContexts().flatMap((c) => specOf(c).attachments.map((a) => a.hostIfname)),
  );
  let index = 0;
  while (
    held.has(hostVethIfname(record.name, index)) ||
    host.rtnl.linkGet(hostVethIfname(record.name, index))
  )
    index++;
  return { ifname, hostIfname: hostVethIfname(record.name, index) };
}

function undo(fn: () => void): void {
  try {
    fn();
  } catch {
    // gc finishes what this leaves; the first error is the one to report
  }
}
