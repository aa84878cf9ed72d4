/**
 * Who the host-side listener (`serve --host-dns`) answers: the host's own processes, and nobody else. A packet from
 * another machine cannot carry a loopback source or one of this host's own addresses (the kernel drops such a
 * "martian" on input), so a listener on a LAN address still answers only here: no open resolver, no amplifier.
 */
import { parseIp } from "../net/cidr.ts";

export function isHostSender(source: string, listenAddresses: readonly string[]): boolean {
  const bare = source.startsWith("::ffff:") && source.includes(".") ? source.slice(7) : source;
  let ip: ReturnType<typeof parseIp>;
  try {
    ip = parseIp(bare, "source");
  } catch {
    return false;
  }
  if (ip.family === 4 ? ip.text.startsWith("127.") : ip.text === "::1") return true;
  // The kernel picks the destination itself as the source of a packet to a local address.
  return listenAddresses.some((a) => {
    try {
      return parseIp(a, "address").text === ip.text;
    } catch {
      return false;
    }
  });
}
