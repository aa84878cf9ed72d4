/**
 * l3 (the IBM model): the shared stack, with a routing table of the context's own. Policy rules send traffic from
 * its addresses, and from its cgroup's sockets (by the fwmark the socket-creation hook sets), to that table.
 */
import type { Host } from "../host.ts";
import type { Rtnl } from "../kernel/rtnl.ts";
import { parseRouteArg } from "../model/route.ts";
import { cidrContains, formatIp, parseInterfaceAddress, parseIp } from "../net/cidr.ts";
import { familyOf, tolerateMissing } from "../networks/common.ts";
import type { ContextSpec, LevelDriver } from "./driver.ts";
import { confineContext, releaseContext, sharedStackExecArgv } from "./shared-stack.ts";

/** Ahead of the main table (32766), behind the local table (0) so local delivery is unchanged. */
export const L3_RULE_PRIORITY = 1000;
export const FIRST_L3_TABLE = 1000;

export const l3Level: LevelDriver = {
  level: "l3",

  create(host, _name, spec) {
    const table = spec.table!;
    confineContext(host, spec, table);
    for (const rule of rulesOf(spec)) host.rtnl.ruleAdd(rule);
    for (const route of routesOf(host, spec)) host.rtnl.routeAdd(route);
  },

  teardown(host, _name, spec) {
    for (const rule of rulesOf(spec)) tolerateMissing(() => host.rtnl.ruleDel(rule));
    if (spec.table !== undefined) flushTable(host.rtnl, spec.table);
    releaseContext(host, spec);
  },

  execArgv: sharedStackExecArgv,
};

function rulesOf(spec: ContextSpec) {
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
 * The table holds the connected routes of the context's networks and the routes it was given. Without a default
 * route of its own a lookup falls through to the host's main table (fib rules continue past a table with no match).
 */
function routesOf(_host: Host, spec: ContextSpec) {
  const table = spec.table!;
  const connected = spec.attachments.flatMap((a) =>
    a.addresses.map((cidr) => ({
      dst: subnetOf(cidr),
      dev: a.ifname,
      scope: "link" as const,
      src: cidr.split("/")[0]!,
      table,
    })),
  );
  const given = (spec.routes ?? []).map((text) => {
    const r = parseRouteArg(text);
    const att = r.gateway ? attachmentHolding(spec, r.gateway) : spec.attachments[0];
    return {
      dst: r.dst,
      family: r.family,
      table,
      ...(att ? { dev: att.ifname } : {}),
      ...(r.gateway ? { gateway: r.gateway, onlink: att !== undefined } : {}),
      ...(r.metric !== undefined ? { metric: r.metric } : {}),
    };
  });
  return [...connected, ...given];
}

function subnetOf(cidr: string): string {
  const c = parseInterfaceAddress(cidr, "address");
  return `${formatIp(c.family, c.network)}/${c.prefix}`;
}

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
