/**
 * What the kernel holds that carries our marks, per kind: links of group LINK_GROUP or with an nc- name, netns
 * netctx-*, cgroups under our parent, policy rules at the l3 priority, routes on our devices, global addresses on
 * our devices. Nothing without one of those marks is ever listed, so nothing else is ever removed.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { Host } from "../../host.ts";
import { contextsCgroupParentPath } from "../../kernel/cgroup.ts";
import { deleteNetns, listNetns } from "../../kernel/netns.ts";
import { RT_TABLE_MAIN } from "../../kernel/route.ts";
import type { Link, Route, Rule } from "../../kernel/rtnl.ts";
import { FIRST_L3_TABLE, L3_RULE_PRIORITY } from "../../levels/l3.ts";
import { releaseCgroup } from "../../levels/shared-stack.ts";
import { LINK_GROUP, NETNS_PREFIX, PREFIX } from "../../model/names.ts";
import { tolerateMissing } from "../../networks/common.ts";
import { addressId, mainRouteId, type ObjectKind, type Present, tableId } from "../../networks/ownership.ts";

/** One kind's objects, read from the kernel now. */
export function observe(host: Host, kind: Exclude<ObjectKind, "shortcut">): Present[] {
  switch (kind) {
    case "link":
      return ourLinks(host).map((l) => ({
        kind,
        id: l.name,
        unowned: "no network or context owns it",
        remove: () => tolerateMissing(() => host.rtnl.linkDel(l.name)),
      }));
    case "netns":
      return listNetns()
        .filter((n) => n.startsWith(NETNS_PREFIX))
        .map((name) => ({ kind, id: name, unowned: "no context owns it", remove: () => deleteNetns(name) }));
    case "cgroup":
      return ourCgroups(host).map((path) => ({
        kind,
        id: path,
        // Refused while a process runs anywhere below it (a child cgroup too): its programs stay until then.
        unowned: "no context owns it",
        remove: () => releaseCgroup(path),
      }));
    case "rule":
      return [...host.rtnl.ruleList(4), ...host.rtnl.ruleList(6)]
        .filter((r) => r.priority === L3_RULE_PRIORITY)
        .map((rule) => ({
          kind,
          id: tableId(rule.table),
          object: `rule ${describeRule(rule)}`,
          unowned: `no context owns table ${rule.table}`,
          remove: () => tolerateMissing(() => host.rtnl.ruleDel(rule)),
        }));
    case "route":
      return host.rtnl.routeList().flatMap((r) => routeOnOurDevice(host, r));
    case "address": {
      const ours = new Set(ourLinks(host).map((l) => l.name));
      return host.rtnl
        .addrList()
        .filter((a) => a.scope === "global" && ours.has(a.ifname))
        .map((a) => ({
          kind,
          id: addressId(a.cidr, a.ifname),
          object: `address ${a.cidr} dev ${a.ifname}`,
          on: a.ifname,
          unowned: "no network or lease owns it",
          remove: () => tolerateMissing(() => host.rtnl.addrDel(a.ifname, a.cidr)),
        }));
    }
  }
}

function ourLinks(host: Host): Link[] {
  return host.rtnl.linkList().filter((l) => l.group === LINK_GROUP || l.name.startsWith(PREFIX));
}

/**
 * Routes of context tables are ours to remove; routes of the main table on our devices are there to be added to
 * (the kernel's prefix routes and anything an operator added stay).
 */
function routeOnOurDevice(_host: Host, r: Route): Present[] {
  if (!r.dev?.startsWith(PREFIX)) return [];
  if (r.table === RT_TABLE_MAIN) return [{ kind: "route", id: mainRouteId(r.dst, r.dev), on: r.dev }];
  if (r.table < FIRST_L3_TABLE) return [];
  return [
    {
      kind: "route",
      id: tableId(r.table),
      object: `route ${r.dst} dev ${r.dev} table ${r.table}`,
      on: r.dev,
      unowned: "no context owns the table",
      remove: () => tolerateMissing(() => _host.rtnl.routeDel(r)),
    },
  ];
}

function ourCgroups(host: Host): string[] {
  let parent: string;
  try {
    parent = contextsCgroupParentPath(host.config.cgroupParent);
  } catch {
    return []; // no cgroup v2: no cgroups of ours either
  }
  if (!existsSync(parent)) return [];
  try {
    return readdirSync(parent, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => join(parent, e.name))
      .sort();
  } catch {
    return [];
  }
}

function describeRule(r: Rule): string {
  const parts = [`-${r.family} pref ${r.priority}`];
  if (r.from) parts.push(`from ${r.from}`);
  if (r.fwmark !== undefined) parts.push(`fwmark ${r.fwmark}`);
  parts.push(`table ${r.table}`);
  return parts.join(" ");
}
