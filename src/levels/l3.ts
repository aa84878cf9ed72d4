/**
 * l3 (the IBM model): the shared stack, with a routing table of the context's own. Policy rules send traffic from
 * its addresses, and from its cgroup's sockets (by the fwmark the socket-creation hook sets), to that table.
 */

import { attachDevicePolicy } from "../kernel/bpf/socket-policy.ts";
import type { RouteSpec } from "../kernel/route.ts";
import type { Rtnl } from "../kernel/rtnl.ts";
import type { RuleSpec } from "../kernel/rule.ts";
import { parseRouteArg } from "../model/route.ts";
import { cidrContains, formatIp, parseInterfaceAddress, parseIp } from "../net/cidr.ts";
import { dropCountersIfAny } from "../networks/cgroup-counters.ts";
import { familyOf, tolerateMissing } from "../networks/common.ts";
import { ruleId, tableId, tableRouteId } from "../networks/ownership.ts";
import type { ContextSpec, LevelDriver } from "./driver.ts";
import { specOf } from "./driver.ts";
import { l3Policy } from "./l3-devices.ts";
import {
  confineContext,
  declareSharedStack,
  releaseContext,
  sharedStackAnchor,
  sharedStackSandbox,
} from "./shared-stack.ts";

/** Ahead of the main table (32766), behind the local table (0) so local delivery is unchanged. */
export const L3_RULE_PRIORITY = 1000;
export const FIRST_L3_TABLE = 1000;

export const l3Level: LevelDriver = {
  level: "l3",
  sharedStack: true,
  ownTable: true,

  create(host, _name, spec) {
    const table = spec.table!;
    confineContext(host, spec, table);
    for (const rule of rulesOf(spec)) host.rtnl.ruleAdd(rule);
    host.pause("create:after-rules");
    for (const route of routesOf(spec)) host.rtnl.routeAdd(route);
    // The device guard last: the devices its packets may leave through are those of the table just filled.
    const ifindexOf = (name: string) => host.rtnl.linkIndexIfAny(name);
    const policy = l3Policy(spec, ifindexOf, host.rtnl.routeList({ table }));
    const dropCounters = dropCountersIfAny(host);
    attachDevicePolicy(spec.cgroup!, dropCounters === undefined ? policy : { ...policy, dropCounters });
  },

  teardown(host, _name, spec) {
    for (const rule of rulesOf(spec)) tolerateMissing(() => host.rtnl.ruleDel(rule));
    if (spec.table !== undefined) flushTable(host.rtnl, spec.table);
    releaseContext(host, spec);
  },

  execSandbox: sharedStackSandbox,
  anchorMissing: sharedStackAnchor,

  /**
   * What the shared-stack levels own, with the devices the table uses as the kernel has them now, and its table: every
   * rule and route of it (gc only removes a table nobody owns; the rules and routes come and go with the context).
   */
  declare(host, record, own) {
    const spec = specOf(record);
    const table = spec.table;
    declareSharedStack(host, spec, own, () =>
      l3Policy(
        spec,
        (name) => host.rtnl.linkIndexIfAny(name),
        table === undefined ? [] : host.rtnl.routeList({ table }),
      ),
    );
    if (table === undefined) return;
    own.own("rule", tableId(table), { prefix: true });
    own.own("route", tableId(table), { prefix: true });
    // Each rule and route create made, made again when it is gone (a route goes with a device deleted under it).
    for (const rule of rulesOf(spec))
      own.own("rule", ruleId(rule), {
        make: {
          action: "add",
          object: `rule ${rule.from ? `from ${rule.from}` : `fwmark ${rule.fwmark}`} table ${table}`,
          reason: `${own.owner} selects its table by it`,
          run: () => host.rtnl.ruleAdd(rule),
        },
      });
    for (const route of routesOf(spec)) {
      const family = route.family ?? familyOf(route.dst);
      own.own("route", tableRouteId(table, family, route.dst), {
        ...(route.dev ? { on: route.dev } : {}),
        make: {
          action: "add",
          object: `route ${route.dst}${route.gateway ? ` via ${route.gateway}` : ""} table ${table}`,
          reason: `${own.owner}'s table holds it`,
          run: () => host.rtnl.routeAdd(route),
        },
      });
    }
  },
};

function rulesOf(spec: ContextSpec): RuleSpec[] {
  const table = spec.table!;
  const families = new Set(spec.attachments.flatMap((a) => a.addresses.map(familyOf)));
  return [...families].flatMap((family) => [
    { family, priority: L3_RULE_PRIORITY, fwmark: table, fwmask: 0xffffffff, table },
    ...spec.attachments
      .flatMap((a) => a.addresses)
      .filter((a) => familyOf(a) === family)
      .map((a) => ({
        family,
        priority: L3_RULE_PRIORITY,
        from: `${a.split("/")[0]}/${family === 4 ? 32 : 128}`,
        table,
      })),
  ]);
}

/**
 * The table holds the connected routes of the context's networks (one per subnet, with the context's address as
 * source) and the routes it was given. Without a default route of its own a lookup falls through to the host's main
 * table (fib rules go on past a table with no match); with one, the host's more specific routes are not seen.
 */
function routesOf(spec: ContextSpec): RouteSpec[] {
  const table = spec.table!;
  const connected = new Map<string, RouteSpec>();
  for (const a of spec.attachments)
    for (const cidr of a.addresses) {
      const dst = subnetOf(cidr);
      // Two addresses in one subnet: the first is the source, a second route would be EEXIST.
      if (!connected.has(dst))
        connected.set(dst, { dst, dev: a.ifname, scope: "link", src: cidr.split("/")[0]!, table });
    }
  const given = (spec.routes ?? []).map((text): RouteSpec => {
    const r = parseRouteArg(text);
    const base = {
      dst: r.dst,
      family: r.family,
      table,
      ...(r.metric !== undefined ? { metric: r.metric } : {}),
    };
    if (!r.gateway) {
      const att = spec.attachments.find((a) => a.addresses.some((c) => familyOf(c) === r.family));
      return { ...base, ...(att ? { dev: att.ifname } : {}) };
    }
    // A gateway inside a host network's subnet is on-link through its host device. A link-local IPv6 gateway
    // needs a device too. Any other gateway is left to the kernel, which resolves it through this table and
    // then the others (fib_check_nh), and refuses one it cannot reach (ENETUNREACH).
    const holder = attachmentHolding(spec, r.gateway);
    if (holder) return { ...base, gateway: r.gateway, dev: holder.ifname, onlink: true };
    const linkLocal = r.family === 6 && /^fe[89ab]/i.test(r.gateway);
    const att = linkLocal
      ? spec.attachments.find((a) => a.addresses.some((c) => familyOf(c) === 6))
      : undefined;
    return { ...base, gateway: r.gateway, ...(att ? { dev: att.ifname } : {}) };
  });
  return [...connected.values(), ...given];
}

function subnetOf(cidr: string): string {
  const c = parseInterfaceAddress(cidr, "address");
  return `${formatIp(c.family, c.network)}/${c.prefix}`;
}

/** The attachment whose network subnet (the address's prefix) holds the gateway. */
function attachmentHolding(spec: ContextSpec, gateway: string) {
  const gw = parseIp(gateway, "route");
  return spec.attachments.find((a) =>
    a.addresses.some((cidr) => cidrContains(parseInterfaceAddress(cidr, "address"), gw.family, gw.addr)),
  );
}

function flushTable(rtnl: Rtnl, table: number): void {
  for (const family of [4, 6] as const)
    for (const route of rtnl.routeList({ family, table })) tolerateMissing(() => rtnl.routeDel(route));
}
