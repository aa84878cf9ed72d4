/**
 * The policy data path (issue 19): the maps of kernel/bpf/policy-program.ts, the programs that read them, and where
 * they hang.
 *
 *  - Anchor, and l3/socket enforcement: the cgroup-skb programs (ingress and egress, BPF_F_ALLOW_MULTI) on the
 *    shared-stack contexts' cgroup parent. Every context cgroup beneath runs them besides its own socket programs
 *    (effective programs), and a later process finds the maps by querying them (no bpffs), as the bridge shortcut
 *    does with its bridge.
 *  - l2 (bridge, routed, overlay): filters in the shared tc blocks every port of the network joins (a clsact qdisc
 *    made with the port, port-blocks.ts): the ingress block (from the context) and the egress block (towards it).
 *    The policy filter sits at a lower preference than the bridge shortcut's (kernel/tc.ts BLOCK_PREF), so a denied
 *    frame never reaches its bpf_redirect_peer, and lets a frame on with TC_ACT_UNSPEC, so the shortcut runs next.
 *    Blocks hold the filters while a policy selects somebody: a context made while the tables are open costs
 *    nothing more, and the first selecting tables add them once per network, not per port (tcx cost an RCU grace
 *    period, ~17 ms, per port and direction). Once added they stay (one array lookup while open).
 *    A port outside the blocks (a context with bandwidth limits: its ingress holds the limits' qdisc, or a port made
 *    by an earlier netctx) gets tcx programs instead, which run before tc.
 *  - Devices a driver names (NetworkDriver.policyDevices: a macvlan parent of an `--isolate` network, macvlan.ts):
 *    tcx programs, both ways, in the host's netns.
 *    Its contexts are in private mode, so every frame of theirs passes the parent's hooks; the same program decides
 *    there (it decides the whole rule for source and destination wherever it runs).
 *
 * The tables are written in two generations (policy-maps.ts): the inactive one is brought to the new tables entry by
 * entry (a diff), then one update of the state array makes it the active one, so no packet meets a half-written table.
 */
import { existsSync } from "node:fs";
import { NetctxError } from "../errors.ts";
import { type Host, hostSlot } from "../host.ts";
import type { AttachTypeName } from "../kernel/bpf/abi.ts";
import {
  attachProgram,
  detachProgram,
  loadProgram,
  openCgroup,
  progFdById,
  progInfo,
  queryPrograms,
  withFd,
} from "../kernel/bpf/attach.ts";
import { mapFdById, mapInfo } from "../kernel/bpf/maps.ts";
import {
  POLICY_MAP_NAMES,
  POLICY_PROGRAM_NAMES,
  type PolicyHook,
  type PolicyMapFds,
  policyProgram,
} from "../kernel/bpf/policy-program.ts";
import { closeFd } from "../kernel/bpf/syscall.ts";
import { contextsCgroupParent, contextsCgroupParentPath } from "../kernel/cgroup.ts";
import { KernelError } from "../kernel/errors.ts";
import { BLOCK_PREF, type JoinedBlocks, type PortBlocks } from "../kernel/tc.ts";
import { POLICY_WORDS, type PolicyTables } from "../model/policy-tables.ts";
import { dropCountersIfAny } from "./cgroup-counters.ts";
import type { Fix } from "./ownership.ts";
import {
  activeGeneration,
  createPolicyMaps,
  generationEntries,
  isOpen,
  newWriteCache,
  unsupported,
  type WriteCache,
  writeTables,
} from "./policy-maps.ts";

interface Datapath {
  maps: PolicyMapFds;
  /** Loaded port programs (tc filters or tcx), by hook, made on first use. */
  programs: Partial<Record<PolicyHook, number>>;
  /** What this process wrote into the maps (policy-maps.ts WriteCache). */
  written: WriteCache;
}

const KNOWN = hostSlot((): { datapath: Datapath | undefined } => ({ datapath: undefined }));

const CGROUP_HOOKS: readonly PolicyHook[] = ["cgroup-ingress", "cgroup-egress"];
const PORT_HOOKS: readonly PolicyHook[] = ["tcx-ingress", "tcx-egress"];
const ATTACH: Record<PolicyHook, AttachTypeName> = {
  "cgroup-ingress": "CGROUP_INET_INGRESS",
  "cgroup-egress": "CGROUP_INET_EGRESS",
  "tcx-ingress": "TCX_INGRESS",
  "tcx-egress": "TCX_EGRESS",
};

/** Ids and names of the programs at a hook of a cgroup or device; programs that vanish meanwhile are skipped. */
function programsAt(target: number, type: AttachTypeName): { id: number; name: string; fd: number }[] {
  const out: { id: number; name: string; fd: number }[] = [];
  for (const id of queryPrograms(target, type).sort((x, y) => x - y)) {
    let fd: number;
    try {
      fd = progFdById(id);
    } catch (err) {
      if (err instanceof KernelError && err.errnoName === "ENOENT") continue;
      throw err;
    }
    out.push({ id, name: progInfo(fd).name, fd });
  }
  return out;
}

/** The maps a program uses, by their names. */
function mapsOf(progFd: number): PolicyMapFds | undefined {
  const found: Partial<PolicyMapFds> = {};
  for (const id of progInfo(progFd).mapIds) {
    const fd = mapFdById(id);
    const name = mapInfo(fd).name;
    const role = (Object.keys(POLICY_MAP_NAMES) as (keyof PolicyMapFds)[]).find(
      (k) => POLICY_MAP_NAMES[k] === name,
    );
    if (role && found[role] === undefined) found[role] = fd;
    else closeFd(fd);
  }
  if (found.state && found.addresses && found.ports && found.connections) return found as PolicyMapFds;
  for (const fd of Object.values(found)) closeFd(fd);
  return undefined;
}

/** The anchor on the cgroup parent: the maps of its ingress program (the lowest id if two processes raced). */
function findAnchor(host: Host): Datapath | undefined {
  let parent: string;
  try {
    parent = contextsCgroupParentPath(host.config.cgroupParent);
  } catch {
    return undefined; // no cgroup v2: nothing was ever anchored
  }
  // Asked once per port by every drift check (portPolicyFix): without the directory, answered without building the
  // two errors a failed open makes (~50 us a port).
  if (!existsSync(parent)) return undefined;
  let cg: number;
  try {
    cg = openCgroup(parent);
  } catch (err) {
    if (err instanceof NetctxError && err.code === "not-found") return undefined;
    throw err;
  }
  return withFd(cg, () => {
    let maps: PolicyMapFds | undefined;
    for (const p of programsAt(cg, "CGROUP_INET_INGRESS")) {
      if (!maps && p.name === POLICY_PROGRAM_NAMES["cgroup-ingress"]) maps = mapsOf(p.fd);
      closeFd(p.fd);
    }
    return maps && { maps, programs: {}, written: newWriteCache() };
  });
}

function datapathIfAny(host: Host): Datapath | undefined {
  const known = host.cache(KNOWN);
  known.datapath ??= findAnchor(host);
  return known.datapath;
}

function load(maps: PolicyMapFds, hook: PolicyHook, dropCounters?: number): number {
  try {
    return loadProgram(policyProgram(maps, hook, POLICY_WORDS, dropCounters));
  } catch (err) {
    if (err instanceof KernelError) throw unsupported(`the policy program for ${hook}`, err);
    throw err;
  }
}

/**
 * The anchor, made when there is none: maps, and the cgroup programs on the contexts' cgroup parent. Two processes
 * making it at once agree on the lowest program id; the other takes its programs out again.
 */
function ensureAnchor(host: Host): Datapath {
  const existing = datapathIfAny(host);
  if (existing) return existing;
  const parent = contextsCgroupParent(host.config.cgroupParent);
  const maps = createPolicyMaps();
  const loaded: { hook: PolicyHook; fd: number }[] = [];
  try {
    // The cgroup hooks' refusals are the shared-stack contexts' drops (networks/cgroup-counters.ts).
    const counters = dropCountersIfAny(host);
    for (const hook of CGROUP_HOOKS) loaded.push({ hook, fd: load(maps, hook, counters) });
    withFd(openCgroup(parent), (cg) => {
      const attached: typeof loaded = [];
      try {
        for (const p of loaded) {
          attachProgram(cg, p.fd, ATTACH[p.hook]);
          attached.push(p);
        }
      } catch (err) {
        for (const p of attached) detachProgram(cg, p.fd, ATTACH[p.hook]);
        if (err instanceof KernelError) throw unsupported("cgroup-skb programs on the contexts' cgroup", err);
        throw err;
      }
      const present = programsAt(cg, "CGROUP_INET_INGRESS");
      for (const p of present) closeFd(p.fd);
      const first = present.find((p) => p.name === POLICY_PROGRAM_NAMES["cgroup-ingress"]);
      if (first && first.id !== progInfo(loaded[0]!.fd).id)
        for (const p of loaded) detachProgram(cg, p.fd, ATTACH[p.hook]);
    });
  } finally {
    for (const p of loaded) closeFd(p.fd);
    for (const fd of Object.values(maps)) closeFd(fd);
  }
  host.cache(KNOWN).datapath = undefined;
  const found = datapathIfAny(host);
  if (!found) throw new NetctxError("internal", "policy data path: the anchor attached is not found again");
  return found;
}

/**
 * The engine calls this after every change of policies, labels, contexts or networks. Bad tables are refused
 * (invalid, naming the field) before anything is written. Tables that select somebody make the anchor when there is
 * none, and put the port programs where they are missing.
 */
export function writePolicyTables(host: Host, tables: PolicyTables, devices: readonly string[] = []): void {
  const open = isOpen(tables);
  let datapath = datapathIfAny(host);
  if (!datapath) {
    generationEntries(tables, 1); // the checks, before an anchor is made for them (writeTables checks otherwise)
    if (open) return;
    datapath = ensureAnchor(host);
  }
  const wasOpen = writeTables(datapath.maps, tables, datapath.written) === 0;
  // Only when the tables stop being open: from then on every port made hooks itself (attachPortPolicy), and a hook
  // lost later is gc's and repair's (portPolicyFix). A port made meanwhile joined its blocks before it read the
  // generation, and this reads the blocks after setting it: one of the two sees the other.
  if (wasOpen && !open) hookAllPorts(host, datapath, devices);
}

/**
 * Every l2 port: the filters in each block a port of ours is joined to (once per block, from the kernel's list, so
 * a port whose record is not yet committed counts too); tcx on a context's port that is in no block.
 */
function hookAllPorts(host: Host, datapath: Datapath, devices: readonly string[]): void {
  const links = host.rtnl.linkList();
  const ours = new Set(links.filter((l) => l.group === host.linkMark.group).map((l) => l.index));
  const index = new Map(links.map((l) => [l.name, l.index]));
  const joined = host.rtnl.joinedBlocks();
  const done = new Set<string>();
  for (const [ifindex, was] of joined) {
    const blocks = portBlocks(was);
    if (!blocks || !ours.has(ifindex) || done.has(`${blocks.ingress}/${blocks.egress}`)) continue;
    done.add(`${blocks.ingress}/${blocks.egress}`);
    addBlockFilters(host, datapath, blocks);
  }
  for (const ifname of [...l2Ports(host), ...devices]) {
    const ifindex = index.get(ifname);
    if (ifindex !== undefined && !portBlocks(joined.get(ifindex))) attachTcx(host, datapath, ifname);
  }
}

/** The host-side devices of every context with a netns of its own (macvlan attachments have none). */
function l2Ports(host: Host): string[] {
  return host.store
    .listContexts()
    .filter((c) => c.spec.netns !== undefined)
    .flatMap((c) => c.spec.attachments.map((a) => a.hostIfname))
    .filter((name) => name !== "");
}

/** Both blocks of a port that joined them (port-blocks.ts); an ingress qdisc without an egress block is not one. */
function portBlocks(joined: JoinedBlocks | undefined): PortBlocks | undefined {
  return joined?.egress === undefined ? undefined : { ingress: joined.ingress, egress: joined.egress };
}

function program(datapath: Datapath, hook: PolicyHook): number {
  datapath.programs[hook] ??= load(datapath.maps, hook);
  return datapath.programs[hook];
}

const BLOCK_HOOKS = [
  { side: "ingress", hook: "tcx-ingress" },
  { side: "egress", hook: "tcx-egress" },
] as const;

/** Whether the block holds our filter for the hook at its preference. */
function blockHas(host: Host, block: number, hook: PolicyHook): boolean {
  return host.rtnl
    .blockFilters(block)
    .some((f) => f.pref === BLOCK_PREF.policy && f.name === POLICY_PROGRAM_NAMES[hook]);
}

/** The policy filters in a network's blocks, where missing. */
function addBlockFilters(host: Host, datapath: Datapath, blocks: PortBlocks): void {
  for (const { side, hook } of BLOCK_HOOKS) {
    const block = blocks[side];
    if (blockHas(host, block, hook)) continue;
    let added: boolean;
    try {
      added = host.rtnl.blockProgramAdd(
        block,
        BLOCK_PREF.policy,
        program(datapath, hook),
        POLICY_PROGRAM_NAMES[hook],
      );
    } catch (err) {
      if (err instanceof KernelError) throw unsupported(`a cls_bpf filter in tc block ${block}`, err);
      throw err;
    }
    // EEXIST: another process added it meanwhile, or something else sits where the policy must decide first.
    if (!added && !blockHas(host, block, hook)) {
      const there = host.rtnl.blockFilters(block).find((f) => f.pref === BLOCK_PREF.policy);
      throw new NetctxError(
        "conflict",
        `policy data path: tc block ${block} holds ${there ? `${there.kind} filter ${there.name}` : "a filter"} at preference ${BLOCK_PREF.policy}, where the policy filter must run first`,
      );
    }
  }
}

/** tcx programs on a port outside the blocks, both ways; programs of ours already there are kept. */
function attachTcx(host: Host, datapath: Datapath, ifname: string): void {
  const ifindex = host.rtnl.linkIndexIfAny(ifname);
  if (ifindex === undefined) return;
  for (const hook of PORT_HOOKS) {
    const present = programsAt(ifindex, ATTACH[hook]);
    for (const p of present) closeFd(p.fd);
    if (present.some((p) => p.name === POLICY_PROGRAM_NAMES[hook])) continue;
    try {
      // bpf_mprog flags 0: after the programs already there.
      attachProgram(ifindex, program(datapath, hook), ATTACH[hook], 0);
    } catch (err) {
      if (err instanceof KernelError && err.errnoName === "EEXIST") continue;
      if (err instanceof KernelError && err.errnoName === "ENODEV") return;
      if (err instanceof KernelError) throw unsupported(`a tcx attachment (Linux 6.6+) on ${ifname}`, err);
      throw err;
    }
  }
}

/**
 * An l2 context's port gets the policy hooks, both ways, when a policy selects anybody (otherwise the first tables
 * that do put them there): `blocks`, the shared blocks it just joined, get the policy filters; a port given without
 * (it left them for bandwidth limits) gets tcx programs. Call it before the port comes up, and for a port leaving
 * its blocks before it leaves. A missing device is no error (a context going away meanwhile).
 */
export function attachPortPolicy(host: Host, ifname: string, blocks?: PortBlocks): void {
  const datapath = datapathIfAny(host);
  if (!datapath || activeGeneration(datapath.maps) === 0) return;
  if (blocks) addBlockFilters(host, datapath, blocks);
  else attachTcx(host, datapath, ifname);
}

/** For gc and repair: the port should hold the policy hooks (a policy selects somebody) and does not. */
export function portPolicyFix(host: Host, ifname: string): Fix | undefined {
  const datapath = datapathIfAny(host);
  if (!datapath || activeGeneration(datapath.maps) === 0) return undefined;
  const ifindex = host.rtnl.linkIndexIfAny(ifname);
  if (ifindex === undefined) return undefined;
  const blocks = portBlocks(host.rtnl.deviceBlocks(ifindex));
  const hooks = portPolicyHooks(host, ifname);
  if (hooks.ingress && hooks.egress) return undefined;
  const missing = hooks.ingress ? "egress" : "ingress";
  if (blocks)
    return {
      action: "reattach",
      object: `policy filters in tc blocks ${blocks.ingress} and ${blocks.egress}`,
      reason: `a policy selects contexts and the ${missing} block of ${ifname} lacks the policy filter`,
      run: () => addBlockFilters(host, datapath, blocks),
    };
  return {
    action: "reattach",
    object: `policy programs on ${ifname}`,
    reason: `a policy selects contexts and ${ifname} lacks its ${missing} program`,
    run: () => attachTcx(host, datapath, ifname),
  };
}

/** For tests and inspect: whether each direction of the port runs our program (a filter of its block, or tcx). */
export function portPolicyHooks(host: Host, ifname: string): Record<"ingress" | "egress", boolean> {
  const ifindex = host.rtnl.linkIndex(ifname);
  const blocks = portBlocks(host.rtnl.deviceBlocks(ifindex));
  const has = (side: "ingress" | "egress", hook: PolicyHook) => {
    if (blocks) return blockHas(host, blocks[side], hook);
    const present = programsAt(ifindex, ATTACH[hook]);
    for (const p of present) closeFd(p.fd);
    return present.some((p) => p.name === POLICY_PROGRAM_NAMES[hook]);
  };
  return { ingress: has("ingress", "tcx-ingress"), egress: has("egress", "tcx-egress") };
}

/** The maps the data path reads, found from the anchor (undefined while none was made): for tests and inspection. */
export function policyMapsIfAny(host: Host): PolicyMapFds | undefined {
  return datapathIfAny(host)?.maps;
}
