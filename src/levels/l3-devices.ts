/**
 * An l3 context's whole socket policy, with the devices it may use (kernel/bpf/device-programs.ts says why the
 * table alone does not keep it to them): its sockets may be given only its networks' devices, and for each family
 * it was given a default route for, its packets may leave only through those devices and the ones its table's
 * routes use (a gateway outside its networks is resolved by the kernel, through any device). A family without a
 * default route of its own falls through to the host's main table by design, so its packets may take any device.
 * The families come from the record, not from the table: a table that lost its routes (the kernel drops them with
 * a deleted device) keeps the guard. Ifindexes are read when the programs are made; gc compares them and remakes
 * the programs when a device is back with a new one.
 */
import type { SocketPolicy } from "../kernel/bpf/socket-policy.ts";
import type { Route } from "../kernel/route.ts";
import { parseRouteArg } from "../model/route.ts";
import type { ContextSpec } from "./driver.ts";
import { addressPolicy } from "./shared-stack.ts";

/** `tableRoutes`: the routes of the context's table as the kernel holds them (both families). */
export function l3Policy(
  spec: ContextSpec,
  ifindexOf: (name: string) => number | undefined,
  tableRoutes: Route[],
): SocketPolicy {
  const names = [...new Set(spec.attachments.map((a) => a.ifname))];
  const own = names.flatMap((n) => {
    const index = ifindexOf(n);
    return index === undefined ? [] : [index];
  });
  const given = (spec.routes ?? []).map((text) => parseRouteArg(text));
  const egress = (family: 4 | 6): number[] | undefined => {
    if (!given.some((r) => r.family === family && (r.dst === "default" || r.dst.endsWith("/0"))))
      return undefined;
    const routes = tableRoutes.filter((r) => r.family === family && r.table === spec.table);
    return [...new Set([...own, ...routes.flatMap((r) => (r.devIndex ? [r.devIndex] : []))])];
  };
  const egress4 = egress(4);
  const egress6 = egress(6);
  return {
    ...addressPolicy(spec, spec.table),
    devices: { names, ifindexes: own },
    ...(egress4 || egress6
      ? { egress: { ...(egress4 ? { ipv4: egress4 } : {}), ...(egress6 ? { ipv6: egress6 } : {}) } }
      : {}),
  };
}
