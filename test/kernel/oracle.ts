/** iproute2 as the oracle for the kernel tests: what the kernel itself reports, as JSON. */
import { execFileSync } from "node:child_process";

export type Json = Record<string, unknown>;

/** `ip -j ARGS`, optionally inside the netns at path (nsenter, so it works for any path). */
export function ipj(args: string[], netns?: string): Json[] {
  const argv = ["ip", "-j", ...args];
  const cmd = netns ? ["nsenter", `--net=${netns}`, "--", ...argv] : argv;
  const out = execFileSync(cmd[0]!, cmd.slice(1), { encoding: "utf8" });
  return JSON.parse(out.trim() || "[]") as Json[];
}

export function ipLink(name: string, netns?: string): Json {
  const [link] = ipj(["-d", "link", "show", "dev", name], netns);
  if (!link) throw new Error(`ip link show ${name}: nothing`);
  return link;
}

export function ipLinkNames(netns?: string): string[] {
  return ipj(["link", "show"], netns).map((l) => String(l.ifname));
}

export function linkInfo(link: Json): { info_kind?: string; info_data?: Json; info_slave_kind?: string } {
  return (link.linkinfo ?? {}) as { info_kind?: string; info_data?: Json };
}

/** "10.1.0.2/24" strings of an interface, link-local IPv6 left out. */
export function ipAddrs(ifname: string, netns?: string): { cidr: string; family: string; nodad: boolean }[] {
  const [entry] = ipj(["addr", "show", "dev", ifname], netns);
  const info = (entry?.addr_info ?? []) as Json[];
  return info
    .filter((i) => !String(i.local).startsWith("fe80"))
    .map((i) => ({ cidr: `${i.local}/${i.prefixlen}`, family: String(i.family), nodad: i.nodad === true }));
}

export function sh(cmd: string[]): string {
  return execFileSync(cmd[0]!, cmd.slice(1), { encoding: "utf8" });
}
