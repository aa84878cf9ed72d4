/**
 * The probes that run inside a context, as one small Python program (python3 is the only interpreter here that
 * opens AF_PACKET and raw sockets without a compiler; node would need FFI inside a confined process).
 *
 * Modes (argv[1]):
 *   marker PARAMS  listen on TCP port 0 of the wildcard and on an abstract unix socket, print {"port", "fd", ...};
 *                  answer each line on stdin with a report of what connected; live until stdin closes
 *   host PARAMS    the host's stand-in for escapes (run outside every context): an abstract unix socket and a
 *                  SIGWINCH counter, reported the same way
 *   probe PARAMS   phase 1: print one JSON line of results; read one JSON line (what the auditor did meanwhile);
 *                  phase 2: print one more JSON line
 *   icmp PARAMS    forge an ICMP "fragmentation needed" for a UDP flow (run by the auditor in the context's stack)
 * Each result carries the command or call that produced it, so the audit can show its evidence.
 */
import { existsSync } from "node:fs";
import { ESCAPE_PY } from "./escape-script.ts";
import { NSID_PY } from "./netlink-nsid-script.ts";

export const PROBE_PY = String.raw`
import errno, json, os, select, socket, struct, subprocess, sys, time

def err(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) and e.errno else str(e)

def macb(s): return bytes(int(x, 16) for x in s.split(":"))

def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff

def iphdr(src, dst, proto, plen):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + plen, 0, 0x4000, 64, proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:]

def udp(sp, dp, data): return struct.pack("!HHHH", sp, dp, 8 + len(data), 0) + data

def run(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=5)
        return {"cmd": " ".join(argv), "rc": r.returncode, "out": (r.stdout + r.stderr).strip()[:2000]}
    except Exception as e:
        return {"cmd": " ".join(argv), "rc": -1, "out": str(e)}

def try_(what, fn):
    try:
        v = fn()
        return {"call": what, "ok": True, **({"value": v} if v is not None else {})}
    except Exception as e:
        return {"call": what, "ok": False, "errno": err(e)}

# Listeners only: the markers listen, and a TIME_WAIT left by a connection to this context's own marker in an
# earlier audit can carry the number another marker has drawn now, without being anyone's socket.
def tcp_ports_seen(ports):
    seen = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            for line in open(f).read().splitlines()[1:]:
                fields = line.split()
                if int(fields[3], 16) == 10:
                    seen.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return sorted(p for p in ports if p in seen)

TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}

# /proc/net/tcp prints each 32-bit word of an address in host byte order (little-endian here).
def hexaddr(h):
    if len(h) == 8: return socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(h, 16)))
    return socket.inet_ntop(socket.AF_INET6, b"".join(struct.pack("<I", int(h[i:i + 8], 16)) for i in range(0, 32, 8)))

# Who holds a port in this stack, for the evidence of a refused bind.
def tcp_holders(port):
    out = []
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            for line in open(f).read().splitlines()[1:]:
                fields = line.split()
                addr, p = fields[1].rsplit(":", 1)
                if int(p, 16) == port:
                    out.append("%s:%d %s" % (hexaddr(addr), port, TCP_STATES.get(int(fields[3], 16), fields[3])))
        except OSError:
            pass
    return out

# A target may name a source address to bind first ("src") and a device to bind to (SO_BINDTODEVICE, "dev"); the
# call text names every step up to the one that failed.
def connect_all(targets, timeout):
    socks, out, calls = {}, {}, {}
    for t in targets:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.setblocking(False)
        steps = []
        try:
            if t.get("dev"):
                steps.append("setsockopt(SO_BINDTODEVICE, %s)" % t["dev"]); s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, t["dev"].encode())
            if t.get("src"):
                steps.append("bind(%s:0)" % t["src"]); s.bind((t["src"], 0))
            steps.append("connect(%s:%d)" % (t["addr"], t["port"])); s.connect((t["addr"], t["port"]))
        except BlockingIOError:
            pass
        except OSError as e:
            out[t["key"]] = {"call": ", ".join(steps), "ok": False, "errno": err(e)}; s.close(); continue
        socks[s] = t; calls[t["key"]] = ", ".join(steps)
    deadline = time.time() + timeout
    while socks and time.time() < deadline:
        _, w, _ = select.select([], list(socks), [], max(0, deadline - time.time()))
        for s in w:
            t = socks.pop(s); e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            out[t["key"]] = {"call": calls[t["key"]], "ok": e == 0, **({} if e == 0 else {"errno": errno.errorcode.get(e, str(e))})}
            s.close()
    for s, t in socks.items():
        out[t["key"]] = {"call": calls[t["key"]], "ok": False, "errno": "timeout"}; s.close()
    return out

# The pid and the listener's fd number are what a ptrace/pidfd_getfd probe in another context aims at; the
# abstract socket is what its abstract unix probe connects to.
def marker(p):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 0)); s.listen(16)
    a, check = abstract_listener(p.get("abstract"))
    print(json.dumps({"port": s.getsockname()[1], "bound": s.getsockname()[0], "pid": os.getpid(), "fd": s.fileno(), "abstract": check}), flush=True)
    serve_until_eof([s] + ([a] if a else []), lambda: {"listening": a is not None})

def probe(p):
    ip = p["ip"]; res = {}
    # Callers other than the audit (test/firewall/antispoof.test.ts) run phase 1 for a single check, without escapes.
    if p.get("escapes"): res["escapes"] = escape_probes(p["escapes"])
    res["netns"] = os.stat("/proc/self/ns/net").st_ino
    res["interfaces"] = sorted(n for _, n in socket.if_nameindex())
    mtu = run([ip, "-j", "link", "show", "lo"])
    try: cur = json.loads(mtu["out"])[0]["mtu"]
    except Exception: cur = 65536
    res["changeDevice"] = run([ip, "link", "set", "dev", "lo", "mtu", str(cur)])
    if p.get("foreignDev"):
        fd = p["foreignDev"]
        def send_via():
            idx = socket.if_nametoindex(fd["ifname"])
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            pkt = struct.pack("=I4s4s", idx, b"\0" * 4, b"\0" * 4)
            s.sendmsg([b"netctx-audit"], [(socket.IPPROTO_IP, 8, pkt)], 0, (fd["dst"], 9))
            s.close()
        res["useDevice"] = try_("sendmsg(udp %s:9, IP_PKTINFO ifindex=%s)" % (fd["dst"], fd["ifname"]), send_via)
    res["routes"] = run([ip, "-j", "route", "show", "table", "all"])
    res["routeGet"] = run([ip, "-j", "-d", "route", "get", p["probeDst"]] + (["from", p["own4"]] if p["shared"] else []))
    add = run([ip, "route", "add", p["routeAdd"], "dev", "lo"])
    res["routeAdd"] = add
    res["markers"] = {"looked": p["markerPorts"], "seen": tcp_ports_seen(p["markerPorts"]), "files": "/proc/net/tcp /proc/net/tcp6"}
    def bind_to(addr, port, reuse=False):
        def f():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                if reuse: s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((addr, port)); return "%s:%d" % s.getsockname()
            finally:
                s.close()
        return f
    res["bindForeign"] = try_("bind(%s:0)" % p["foreign4"], bind_to(p["foreign4"], 0))
    if p.get("wildPort"):
        # SO_REUSEADDR, as servers set it: a TIME_WAIT left on this context's own address at that port number (a
        # connection to its own marker, from this or an earlier audit) then no longer answers EADDRINUSE, while a
        # listener that shares the port space, which is what the second context's marker is, still does.
        wp = p["wildPort"]
        res["bindWildcardPort"] = try_("bind(0.0.0.0:%d, SO_REUSEADDR)" % wp, bind_to("0.0.0.0", wp, True))
        if not res["bindWildcardPort"]["ok"]:
            res["bindWildcardPort"]["value"] = "held here by " + (", ".join(tcp_holders(wp)) or "nothing visible")
    res["rawSocket"] = try_("socket(AF_INET, SOCK_RAW, IPPROTO_RAW)", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close())
    res["packetSocket"] = try_("socket(AF_PACKET, SOCK_RAW)", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close())
    sp = p["spoof"]
    def send_spoofed_ip():
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        data = (sp["token"] + ":ip").encode()
        s.sendto(iphdr(sp["src"], sp["dst"], 17, 8 + len(data)) + udp(40000, sp["port"], data), (sp["dst"], 0)); s.close()
    res["spoofIp"] = try_("raw IPv4/UDP %s -> %s:%d" % (sp["src"], sp["dst"], sp["port"]), send_spoofed_ip)
    l2 = p.get("l2")
    if l2:
        def packet(frame):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0); s.bind((l2["ifname"], 0)); s.send(frame); s.close()
        data = (sp["token"] + ":mac").encode()
        frame = macb(l2["gwMac"]) + macb(l2["fakeMac"]) + b"\x08\x00" + iphdr(p["own4"], sp["dst"], 17, 8 + len(data)) + udp(40001, sp["port"], data)
        res["spoofMac"] = try_("ether %s -> %s, IPv4/UDP %s -> %s:%d" % (l2["fakeMac"], l2["gwMac"], p["own4"], sp["dst"], sp["port"]), lambda: packet(frame))
        arp = b"\xff" * 6 + macb(l2["mac"]) + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + macb(l2["mac"]) + socket.inet_aton(l2["arpSpa"]) + b"\0" * 6 + socket.inet_aton(sp["dst"])
        res["arp"] = try_("ARP who-has %s tell %s is-at %s" % (sp["dst"], l2["arpSpa"], l2["mac"]), lambda: packet(arp))
    # Root in an l2 context may route as it likes in its own netns: a target it has no route to gets a host route
    # through its gateway first (taken out again afterwards), so only the host's refusal can stop the connect.
    routed = []
    for t in p["reach"]:
        if t.get("via"):
            t["route"] = run([ip, "route", "add", t["addr"] + "/32", "via", t["via"]])
            if t["route"]["rc"] == 0: routed.append(t)
    res["reach"] = connect_all(p["reach"], 1.0)
    for t in p["reach"]:
        if t.get("route"): res["reach"][t["key"]]["route"] = t["route"]
    for t in routed:
        run([ip, "route", "del", t["addr"] + "/32", "via", t["via"]])
    rx = []
    for auto in (False, True):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if auto:
            s.sendto(b"x", (p["own4"], 9))
        else:
            s.bind(("0.0.0.0", 0))
        rx.append(s)
    res["rxPorts"] = [s.getsockname()[1] for s in rx]
    res["rxBound"] = ["%s:%d" % s.getsockname() for s in rx]
    cache = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        cache.bind((p["own4"], 0)); cache.connect((p["probeDst"], 9))
        res["cacheFlow"] = {"src": p["own4"], "sport": cache.getsockname()[1], "dst": p["probeDst"], "dport": 9}
    except OSError as e:
        res["cacheFlow"] = {"error": err(e)}
    print(json.dumps(res), flush=True)
    go = json.loads(sys.stdin.readline() or "{}")
    out = {"received": []}
    deadline = time.time() + 0.3
    while time.time() < deadline:
        r, _, _ = select.select(rx, [], [], max(0, deadline - time.time()))
        for s in r:
            d, a = s.recvfrom(2048); out["received"].append({"from": a[0], "data": d.decode(errors="replace")})
    out["cacheSeen"] = [run([ip, "-j", "-d", "route", "get", c["dst"]] + (["from", c["from"]] if c.get("from") else [])) | {"key": c["key"]} for c in go.get("cacheChecks", [])]
    if add["rc"] == 0:
        out["routeDel"] = run([ip, "route", "del", p["routeAdd"], "dev", "lo"])
    cache.close()
    print(json.dumps(out), flush=True)

def icmp(p):
    inner = iphdr(p["src"], p["dst"], 17, 8) + struct.pack("!HHHH", p["sport"], p["dport"], 8, 0)
    body = struct.pack("!BBHHH", 3, 4, 0, 0, p["mtu"]) + inner
    body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.sendto(body, (p["src"], 0)); s.close()
    print(json.dumps({"sent": True}), flush=True)

${ESCAPE_PY}
${NSID_PY}
{"marker": marker, "probe": probe, "icmp": icmp, "host": host}[sys.argv[1]](json.loads(sys.argv[2]))
`;

/** python3 from the distribution: pyenv shims need HOME and a shell, which confined processes may not have. */
export function pythonPath(): string {
  return ["/usr/bin/python3", "/usr/local/bin/python3"].find((p) => existsSync(p)) ?? "python3";
}

export type ProbeMode = "marker" | "probe" | "icmp" | "host";

/**
 * What comes between the interpreter and the mode. -I: no PYTHON* variables, user site or script directory from
 * inside a context; -S: no site module (it costs ~20 ms a start here, and the audit starts three interpreters per
 * context). The probe program needs only the standard library.
 */
export const PYTHON_FLAGS = ["-I", "-S", "-c", PROBE_PY] as const;

export function pythonArgv(mode: ProbeMode, params: unknown): string[] {
  return [pythonPath(), ...PYTHON_FLAGS, mode, JSON.stringify(params)];
}
