/** Routes given in `ip route` form on the command line: "default via 10.1.0.254", "10.9.0.0/16 via 10.1.0.1 metric 10". */
import { invalid } from "../errors.ts";
import { type Family, formatIp, parseIp, parseSubnet } from "../net/cidr.ts";

export interface RouteArg {
  dst: string;
  family: Family;
  gateway?: string;
  metric?: number;
}

export function parseRouteArg(text: string, field = "route"): RouteArg {
  const words = text.trim().split(/\s+/);
  const [dstWord, ...rest] = words;
  if (!dstWord) throw invalid(field, "empty route");
  let family: Family | undefined;
  let dst = dstWord;
  if (dstWord !== "default") {
    const c = parseSubnet(
      dstWord.includes("/") ? dstWord : `${dstWord}/${dstWord.includes(":") ? 128 : 32}`,
      field,
    );
    family = c.family;
    dst = c.text;
  }
  const route: Partial<RouteArg> = {};
  for (let i = 0; i < rest.length; i += 2) {
    const key = rest[i]!;
    const value = rest[i + 1];
    if (value === undefined) throw invalid(field, `"${key}" needs a value in "${text}"`);
    if (key === "via") {
      const gw = parseIp(value, field);
      if (family !== undefined && gw.family !== family)
        throw invalid(field, `gateway ${value} is not of the destination's family`);
      family = gw.family;
      route.gateway = formatIp(gw.family, gw.addr);
    } else if (key === "metric") {
      if (!/^\d{1,9}$/.test(value)) throw invalid(field, `metric "${value}" is not a number`);
      route.metric = Number(value);
    } else throw invalid(field, `unknown word "${key}" in "${text}" (known: via, metric)`);
  }
  if (family === undefined) throw invalid(field, `"${text}": a default route needs "via GATEWAY"`);
  return { ...route, dst, family };
}

/**
 * Routes of an l3 context, checked before anything is made: each of a family the context has an address in (its
 * table has no rule for another family, so such a route would never be used), and no two to the same destination
 * and metric (the kernel would refuse the second one with EEXIST halfway through).
 */
export function checkRouteArgs(
  texts: readonly string[],
  subnets: readonly string[],
  field = "route",
): RouteArg[] {
  const families = new Set(subnets.map((s) => parseSubnet(s, "subnet").family));
  const seen = new Set<string>();
  return texts.map((text) => {
    const route = parseRouteArg(text, field);
    if (!families.has(route.family))
      throw invalid(
        field,
        `"${text}" is IPv${route.family}, but the context's networks have no IPv${route.family} subnet`,
      );
    const key = `${route.family} ${route.dst} ${route.metric ?? ""}`;
    if (seen.has(key))
      throw invalid(
        field,
        `two routes to ${route.dst}${route.metric !== undefined ? ` metric ${route.metric}` : ""}`,
      );
    seen.add(key);
    return route;
  });
}
