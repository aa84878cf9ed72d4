/**
 * "A refused operation changes nothing" (issue 17), as one comparable text: the store's records (read through the
 * library, state-oracle.ts: more than the CLI lists, and no CLI started for each look), and everything of the kernel
 * a command could touch, read with the kernel's own tools (kernel-oracle.ts): host links, addresses, routes, policy
 * rules, netns names, the nft ruleset, every cgroup below the test's cgroup parent, and the links, addresses and
 * routes inside every named netns (an l2 context's own stack).
 */
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import {
  addrs,
  kernelSnapshot,
  links,
  netnsNames,
  routes,
  rules,
  withoutRouteFlags,
} from "./kernel-oracle.ts";
import { netnsPath } from "./netns.ts";
import { storeState } from "./state-oracle.ts";

const CG = process.env.NETCTX_CGROUP_PARENT!;

/** Every cgroup directory below the test's cgroup parent, as relative paths, sorted. */
export function cgroupTree(dir = CG): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => join(dir, e.name));
  } catch {
    return [];
  }
  return entries.flatMap((d) => [relative(CG, d), ...cgroupTree(d)]).sort();
}

/** The stack inside each named netns. */
function insideNetns(): Record<string, unknown> {
  return Object.fromEntries(
    netnsNames().map((name) => {
      const path = netnsPath(name);
      return [
        name,
        {
          links: links(path).map((l) => [l.ifname, l.address, l.mtu, l.operstate]),
          addrs: addrs(path).map((a) => [a.ifname, a.addr_info.map((i) => `${i.local}/${i.prefixlen}`)]),
          routes4: withoutRouteFlags(routes(4, path)),
          routes6: withoutRouteFlags(routes(6, path)),
        },
      ];
    }),
  );
}

/** The kernel, as far as netctx could have changed it. */
export function kernelDump(): string {
  return JSON.stringify({
    host: JSON.parse(kernelSnapshot()) as unknown,
    rules4: rules(4),
    rules6: rules(6),
    cgroups: cgroupTree(),
    netns: insideNetns(),
  });
}

/** State and kernel, for before/after comparisons around a command that must change nothing. */
export function operatorDump(): { state: string; kernel: string } {
  return { state: storeState(), kernel: kernelDump() };
}
