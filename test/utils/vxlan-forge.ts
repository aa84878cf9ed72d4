/**
 * A VXLAN frame forged by hand (test/overlay, test/cluster): the argv of a python3 one-shot that sends one VXLAN
 * datagram to `to`:4789 carrying an Ethernet frame to `mac` with inner IPv4 `src` -> `dst`, UDP 5555 -> 9999,
 * payload "forged". Run it in the namespace it is to come from; a counter on UDP 9999 at the receiver tells whether
 * it arrived.
 */
export interface ForgedFrame {
  vni: number;
  /** The receiving VTEP's MAC (the inner destination). */
  mac: string;
  src: string;
  dst: string;
  /** The receiving host's underlay address. */
  to: string;
}

export const FORGED_PORT = 9999;

const SCRIPT = `import socket, struct, sys
vni, mac, src, dst = int(sys.argv[1]), bytes.fromhex(sys.argv[2].replace(":", "")), sys.argv[3], sys.argv[4]
payload = b"forged"
udp = struct.pack("!HHHH", 5555, ${FORGED_PORT}, 8 + len(payload), 0) + payload
hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
words = struct.unpack("!10H", hdr)
csum = sum(words); csum = (csum & 0xffff) + (csum >> 16); csum = (csum & 0xffff) + (csum >> 16)
hdr = hdr[:10] + struct.pack("!H", ~csum & 0xffff) + hdr[12:]
eth = mac + bytes.fromhex("02deadbeef01") + b"\\x08\\x00"
vxlan = struct.pack("!II", 0x08000000, vni << 8)
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(vxlan + eth + hdr + udp, (sys.argv[5], 4789))`;

export function forgeVxlanArgv(f: ForgedFrame): string[] {
  return ["python3", "-c", SCRIPT, String(f.vni), f.mac, f.src, f.dst, f.to];
}
