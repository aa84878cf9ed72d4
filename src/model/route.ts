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
