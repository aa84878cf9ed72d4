/**
 * Independent checks that state and kernel agree, for the reliability tests (crash campaign, gc, parallel creates):
 * read the store through the library and the kernel through the kernel oracle and /sys, and list every disagreement
 * (empty = consistent). This does not reuse gc's own reasoning (nothing from src/engine/), so a gc bug cannot hide
 * itself.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { guardedElements } from "../../src/firewall/antispoof.ts";
import { querySocketPolicy } from "../../src/kernel/bpf/socket-policy.ts";
import { specOf } from "../../src/levels/driver.ts";
import type { NetworkRecord } from "../../src/model/records.ts";
import { Store } from "../../src/state/store.ts";
import { testConfig } from "./config.ts";
import { addrs, type IpRoute, ipj, ipLinkNames, netnsNames, nftSet, rules } from "./kernel-oracle.ts";

/** Every link of the test's host but lo, sorted. */
export function netctxLinks(): string[] {
  return ipLinkNames()
    .filter((n) => n !== "lo")
    .sort();
}

/** Drivers whose network has a device nc-NET holding its gateway addresses. */
const ANCHORED = new Set(["bridge", "host", "routed"]);
/** Of those, the ones whose nc-NET is a bridge registered in the firewall. */
const BRIDGED = new Set(["bridge", "host"]);
/**
 * Networks whose contexts' host-side ports are guarded against spoofing, said here and not taken from the drivers'
 * declarations, which gc reconciles from: a wrong declaration must show up as a disagreement.
 */
const isGuarded = (n: NetworkRecord) =>
  (n.driver === "bridge" || n.driver === "routed") && n.options["antispoof"] !== false;

/** Every disagreement between the store and the kernel, as readable lines. */
export function disagreements(
  store: Store,
  cgroupParent: string | undefined,
  /** Objects a test made on purpose without our marks: not ours to account for. */
  foreign: { links?: string[]; tables?: string[] } = {},
): string[] {
  const foreignLinks = new Set(foreign.links ?? []);
  const problems: string[] = [];
  const networks = store.listNetworks();
  const contexts = store.listContexts();
  const nets = new Map(networks.map((n) => [n.name, n]));
  const diff = (what: string, want: string[], have: string[]) => {
    const w = [...new Set(want)].sort();
    const h = [...new Set(have)].sort();
    if (JSON.stringify(w) !== JSON.stringify(h))
      problems.push(`${what}: want [${w.join(" ")}] have [${h.join(" ")}]`);
  };

  for (const c of contexts) if (c.status !== "ready") problems.push(`context ${c.name} is ${c.status}`);
  for (const n of networks) if (n.op !== undefined) problems.push(`network ${n.name} still marked`);

  // leases: exactly the addresses the contexts hold, no owner without a context
  const leases = store.leases();
  diff(
    "lease owners",
    contexts.filter((c) => specOf(c).attachments.some((a) => a.addresses.length)).map((c) => c.name),
    leases.map((l) => l.owner),
  );
  for (const c of contexts)
    diff(
      `leases of ${c.name}`,
      specOf(c).attachments.flatMap((a) => a.addresses.map((x) => x.split("/")[0]!)),
      leases.filter((l) => l.owner === c.name).map((l) => l.address),
    );
  const leased = leases.map((l) => `${l.network}/${l.address}`);
  if (new Set(leased).size !== leased.length) problems.push("duplicate lease");

  // netns
  const l2 = contexts.filter((c) => c.level === "l2");
  const netns = existsSync("/run/netns") ? netnsNames().filter((n) => n.startsWith("netctx-")) : [];
  // A CNI context lives in the runtime's netns (netnsExternal): that one is not ours to count or delete.
  diff(
    "netns",
    l2.filter((c) => specOf(c).netnsExternal !== true).map((c) => `netctx-${c.name}`),
    netns,
  );

  // links: our bridges and host-side veths, nothing else
  const wantLinks = [
    ...networks.filter((n) => ANCHORED.has(n.driver)).map((n) => `nc-${n.name}`),
    ...l2.flatMap((c) => specOf(c).attachments.map((a) => a.hostIfname)),
  ];
  diff(
    "links",
    wantLinks,
    netctxLinks().filter((l) => !foreignLinks.has(l)),
  );

  // global addresses on our devices
  const wantAddrs: string[] = [];
  for (const n of networks)
    for (const s of n.subnets) {
      if (!s.gateway) continue;
      // A routed network's gateway device holds the bare addresses: no subnet route.
      if (n.driver === "routed")
        wantAddrs.push(`nc-${n.name} ${s.gateway}/${s.gateway.includes(":") ? 128 : 32}`);
      else if (BRIDGED.has(n.driver)) wantAddrs.push(`nc-${n.name} ${s.gateway}/${s.cidr.split("/")[1]}`);
    }
  for (const c of contexts)
    for (const a of specOf(c).attachments)
      if (c.level !== "l2") for (const x of a.addresses) wantAddrs.push(`${a.ifname} ${x}`);
  const haveAddrs = addrs()
    .filter((l) => !foreignLinks.has(l.ifname))
    .flatMap((l) =>
      l.addr_info.filter((i) => i.scope === "global").map((i) => `${l.ifname} ${i.local}/${i.prefixlen}`),
    );
  diff("addresses", wantAddrs, haveAddrs);

  // l3 rules and tables
  const tables = contexts.flatMap((c) => (specOf(c).table !== undefined ? [String(specOf(c).table)] : []));
  const ruleTables = ([4, 6] as const).flatMap((f) =>
    rules(f)
      .filter((r) => r.priority === 1000)
      .map((r) => r.table),
  );
  diff("rule tables", tables, ruleTables);
  const routeTables = [4, 6].flatMap((f) =>
    ipj<IpRoute>([`-${f}`, "route", "show", "table", "all"])
      .filter((r) => r.table !== undefined && Number(r.table) >= 1000)
      .map((r) => r.table!),
  );
  for (const t of routeTables)
    if (!tables.includes(t) && !foreign.tables?.includes(t))
      problems.push(`routes in table ${t} nobody owns`);

  // nft: interfaces and networks registered exactly as state says
  const wantIfaces = [
    ...networks.filter((n) => BRIDGED.has(n.driver)).map((n) => `nc-${n.name}`),
    ...l2.flatMap((c) =>
      specOf(c)
        .attachments.filter((a) => nets.get(a.network)?.driver === "routed")
        .map((a) => a.hostIfname),
    ),
  ];
  diff("nft ifaces", wantIfaces, nftSet("ifaces"));
  diff(
    "nft nets4",
    networks.flatMap((n) => n.subnets.filter((s) => !s.cidr.includes(":")).map((s) => s.cidr)),
    nftSet("nets4"),
  );

  // anti-spoofing guards: exactly the host-side ports of l2 contexts on guarded networks
  const guarded = Object.values(guardedElements()).flatMap((sets) => sets["as_ports"] ?? []);
  diff(
    "antispoof ports",
    l2.flatMap((c) =>
      specOf(c)
        .attachments.filter((a) => {
          const n = nets.get(a.network);
          return n !== undefined && isGuarded(n);
        })
        .map((a) => a.hostIfname),
    ),
    guarded,
  );

  // cgroups and BPF programs
  if (cgroupParent) {
    const shared = contexts.filter((c) => c.level !== "l2");
    const dirs = existsSync(cgroupParent)
      ? readdirSync(cgroupParent, { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => e.name)
      : [];
    diff(
      "cgroups",
      shared.map((c) => c.name),
      dirs,
    );
    for (const c of shared) {
      const hooks = querySocketPolicy(join(cgroupParent, c.name));
      if (hooks.length === 0) problems.push(`context ${c.name} has no BPF programs`);
      for (const h of hooks)
        if (h.progIds.length !== 1)
          problems.push(`context ${c.name}: ${h.progIds.length} programs at ${h.attachType}`);
    }
  }
  return problems;
}

export function openStore(): Store {
  return Store.open(testConfig().stateDir);
}

/**
 * Every record of the store (networks, contexts with their status and marks, leases, policies) read through the
 * library, for "nothing changed" comparisons: more than `netctx ls` and `state export` show (those are views of these
 * records), without starting a CLI for each look.
 */
export function storeState(): string {
  const store = openStore();
  try {
    return JSON.stringify({
      networks: store.listNetworks(),
      contexts: store.listContexts(),
      leases: store.leases(),
      policies: store.listPolicies(),
    });
  } finally {
    store.close();
  }
}
