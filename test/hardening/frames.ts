/**
 * Hand-made frames for the hardening tests: what root inside an l2 context can put on its wire with a packet socket
 * (Router Advertisements, Neighbour Solicitations and Advertisements, redirects, ARP, VLAN-tagged frames), a sniffer that reports which
 * of them arrived, and TCP connects to many targets at once. Python, because a context has it and its packet
 * sockets need no helper binary. (Listeners come from the socket probe.)
 */
import { spawnSync } from "node:child_process";
import { NETCTX } from "../utils/cli.ts";
import { startLines } from "../utils/line-process.ts";
import { contextNetns, inNetns } from "../utils/netns.ts";

const FRAMES_PY = String.raw`
import json, select, socket, struct, sys, time

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF

def mac(s): return bytes.fromhex(s.replace(":", ""))
def a6(s): return socket.inet_pton(socket.AF_INET6, s)
def a4(s): return socket.inet_aton(s)

def ip6(src, dst, nh, payload, hlim=255):
    return struct.pack("!IHBB", 0x60000000, len(payload), nh, hlim) + a6(src) + a6(dst) + payload

def icmp6(src, dst, body):
    c = csum(a6(src) + a6(dst) + struct.pack("!I3xB", len(body), 58) + body)
    return ip6(src, dst, 58, body[:2] + struct.pack("!H", c) + body[4:])

def ip4(src, dst, proto, payload, ttl=64):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, ttl, proto, 0, a4(src), a4(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload

def icmp4(body):
    return body[:2] + struct.pack("!H", csum(body)) + body[4:]

def udp4(src, dst, port, data):
    return ip4(src, dst, 17, struct.pack("!HHHH", 40000, port, 8 + len(data), 0) + data)

def eth(dst, src, etype, payload, vlan=None):
    tag = b"" if vlan is None else struct.pack("!HH", 0x8100, vlan)
    return mac(dst) + mac(src) + tag + struct.pack("!H", etype) + payload

def build(f):
    k = f["kind"]
    if k == "ra":
        # Router lifetime 1800 s, preference high, a Source Link-Layer Address and an autonomous /64 prefix.
        pio = struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0) + a6(f["prefix"])
        body = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0x08, 1800, 0, 0) + bytes([1, 1]) + mac(f["srcMac"]) + pio
        return eth(f["dstMac"], f["srcMac"], 0x86DD, icmp6(f["src"], f["dst"], body), f.get("vlan"))
    if k == "na":
        # Router, Override; Target Link-Layer Address = the sender's MAC.
        body = struct.pack("!BBHI", 136, 0, 0, 0xA0000000) + a6(f["target"]) + bytes([2, 1]) + mac(f["srcMac"])
        return eth(f["dstMac"], f["srcMac"], 0x86DD, icmp6(f["src"], f["dst"], body))
    if k == "ns":
        # Neighbour Solicitation for f["target"]; from :: (DAD, RFC 4862 5.4.2) it carries no Source Link-Layer
        # Address option.
        body = struct.pack("!BBHI", 135, 0, 0, 0) + a6(f["target"])
        if f["src"] != "::":
            body += bytes([1, 1]) + mac(f["srcMac"])
        return eth(f["dstMac"], f["srcMac"], 0x86DD, icmp6(f["src"], f["dst"], body))
    if k == "redirect6":
        # Target (the better first hop) and destination; no Redirected Header option.
        body = struct.pack("!BBHI", 137, 0, 0, 0) + a6(f["target"]) + a6(f["dest"])
        return eth(f["dstMac"], f["srcMac"], 0x86DD, icmp6(f["src"], f["dst"], body))
    if k == "redirect4":
        # Host redirect: for f["dest"] use f["gateway"]. It quotes an echo reply the receiver sent there: the kernel
        # applies a redirect quoting UDP or TCP only for a socket it finds, one quoting an echo reply always.
        inner = ip4(f["dst"], f["dest"], 1, icmp4(struct.pack("!BBHHH", 0, 0, 0, 1, 1)))
        body = icmp4(struct.pack("!BBH4s", 5, 1, 0, a4(f["gateway"])) + inner)
        return eth(f["dstMac"], f["srcMac"], 0x0800, ip4(f["src"], f["dst"], 1, body))
    if k == "arp":
        # Request "who-has tpa tell spa", whose sender hardware address (sha) need not be the frame's source MAC.
        body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac(f["sha"]) + a4(f["spa"]) + b"\0" * 6 + a4(f["tpa"])
        return eth("ff:ff:ff:ff:ff:ff", f["srcMac"], 0x0806, body)
    if k == "udp4":
        payload = udp4(f["src"], f["dst"], f["port"], f["data"].encode())
        return eth(f["dstMac"], f["srcMac"], 0x0800, payload, f.get("vlan"))
    raise SystemExit("unknown frame " + k)

def send(ifname, frames):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    for f in frames:
        s.send(build(f))
        time.sleep(0.02)

def describe(frame, aux):
    etype = struct.unpack("!H", frame[12:14])[0]
    d = {"vlan": aux is not None and bool(aux[0] & 0x10)}
    if etype == 0x86DD and len(frame) >= 55:
        d["family"] = 6
        if frame[20] == 58:
            d["icmp"] = frame[54]
    elif etype == 0x0800 and len(frame) >= 35:
        d["family"] = 4
        ihl = (frame[14] & 15) * 4
        if frame[23] == 1:
            d["icmp"] = frame[14 + ihl]
        if frame[23] == 17:
            d["udp"] = frame[14 + ihl + 8:].decode(errors="replace")
    return d

def sniff(ifname, src_mac, seconds):
    # Every frame from src_mac on ifname, one JSON line each; a UDP payload "end" stops it 0.3 s later.
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA: a VLAN tag offloaded into the skb shows here
    s.bind((ifname, 0))
    print("ready", flush=True)
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not select.select([s], [], [], max(0, deadline - time.time()))[0]:
            continue
        frame, anc, _, _ = s.recvmsg(65535, 64)
        if frame[6:12] != mac(src_mac):
            continue
        aux = next((struct.unpack("IIIHHHH", d[:20]) for l, t, d in anc if l == 263 and t == 8), None)
        d = describe(frame, aux)
        print(json.dumps(d), flush=True)
        if d.get("udp") == "end":
            deadline = min(deadline, time.time() + 0.3)

def connect(targets, timeout):
    # All at once: a dropped SYN costs the whole timeout.
    import threading
    out = {}
    def one(t):
        host, port = t.rsplit(":", 1)
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
            out[t] = True
        except OSError:
            out[t] = False
    threads = [threading.Thread(target=one, args=(t,)) for t in targets]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(json.dumps({t: out[t] for t in targets}))

cmd, arg = sys.argv[1], json.loads(sys.argv[2])
if cmd == "send":
    send(arg["ifname"], arg["frames"])
elif cmd == "sniff":
    sniff(arg["ifname"], arg["srcMac"], arg["seconds"])
elif cmd == "connect":
    connect(arg["targets"], arg["timeout"])
`;

export type Frame = Record<string, string | number>;

/** What the sniffer saw of one frame. */
export interface Seen {
  vlan: boolean;
  family?: 4 | 6;
  icmp?: number;
  udp?: string;
}

/** argv running the helper inside context `ctx` as its root would: through `netctx exec`. */
function inContext(ctx: string, cmd: string, arg: unknown): string[] {
  return [NETCTX, "exec", ctx, "--", "python3", "-c", FRAMES_PY, cmd, JSON.stringify(arg)];
}

/** argv running the helper in the host namespace (the test file's sandbox). */
function onHost(cmd: string, arg: unknown): string[] {
  return ["python3", "-c", FRAMES_PY, cmd, JSON.stringify(arg)];
}

function run(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${argv.slice(0, 4).join(" ")} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** Put `frames` on the wire from inside `ctx` (its eth0), or from the host on `hostIfname`. */
export function sendFrames(from: { ctx: string } | { hostIfname: string }, frames: Frame[]): void {
  if ("ctx" in from) run(inContext(from.ctx, "send", { ifname: "eth0", frames }));
  else run(onHost("send", { ifname: from.hostIfname, frames }));
}

/** TCP connects from inside `ctx` (through `netctx exec`): target "addr:port" or "[v6]:port" -> connected. */
export function connectFrom(ctx: string, targets: string[], timeout = 2): Record<string, boolean> {
  return JSON.parse(run(inContext(ctx, "connect", { targets, timeout }))) as Record<string, boolean>;
}

/**
 * Watch `ctx`'s eth0 (from its netns, as an observer) for frames from `srcMac` while `traffic` runs; the traffic must
 * end with a UDP datagram whose payload is "end" to that context. Returns every frame seen.
 */
export async function sniffDuring(ctx: string, srcMac: string, traffic: () => void): Promise<Seen[]> {
  const sniffer = startLines(
    inNetns(contextNetns(ctx), onHost("sniff", { ifname: "eth0", srcMac, seconds: 15 })),
  );
  await sniffer.next(); // "ready"
  traffic();
  await sniffer.exited;
  return sniffer.lines.slice(1).map((l) => JSON.parse(l) as Seen);
}
