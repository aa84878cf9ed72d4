/** The BPF tests' host: a port-less bridge holding the host's and the contexts' addresses. */
import { execFileSync } from "node:child_process";

export const A4 = "10.99.0.2";
export const B4 = "10.99.0.3";
export const HOST4 = "10.99.0.1";
export const A6 = "fd99::2";
export const B6 = "fd99::3";
export const HOST6 = "fd99::1";
/** Last octet >= 128: as a little-endian u32 its sign bit is set, the case a 64-bit compare gets wrong. */
export const C4 = "10.99.0.200";
export const C6 = "fd99::c8";

/** A port-less bridge serves as the host device of a `host` network. */
export function setUpHostBridge(): void {
  execFileSync("ip", ["link", "add", "nchost0", "type", "bridge"]);
  // ICMP datagram ("ping") sockets are refused by their group check (EACCES) before the creation hook runs;
  // open them to everybody in this namespace so the hook is what refuses them.
  execFileSync("sysctl", ["-qw", "net.ipv4.ping_group_range=0 2147483647"]);
  execFileSync("ip", ["link", "set", "nchost0", "up"]);
  for (const a of [HOST4, A4, B4, C4]) execFileSync("ip", ["addr", "add", `${a}/24`, "dev", "nchost0"]);
  for (const a of [HOST6, A6, B6, C6])
    execFileSync("ip", ["addr", "add", `${a}/64`, "dev", "nchost0", "nodad"]);
}
