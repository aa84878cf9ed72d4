/** The host's upstream resolvers, as resolv.conf names them (`nameserver ADDR` lines; the rest is not ours). */
import { readFileSync } from "node:fs";
import { parseIp } from "../net/cidr.ts";

export function nameserversOf(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    try {
      out.push(parseIp(m[1]!, "nameserver").text);
    } catch {
      // A scoped link-local address (fe80::1%eth0) or a typo: glibc skips those too.
    }
  }
  return out;
}

/** The nameservers of the file at `path`; none when it cannot be read (then every forward gets SERVFAIL). */
export function readNameservers(path: string): string[] {
  try {
    return nameserversOf(readFileSync(path, "utf8"));
  } catch {
    return [];
  }
}
