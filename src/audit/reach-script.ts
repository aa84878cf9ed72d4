/**
 * The reach matrix's processes (audit/reach.ts), one small Python program like probe-script.ts's (python3 runs inside
 * every level's sandbox without a compiler):
 *
 *   listen PARAMS  bind a TCP listener and a UDP socket on each address and port given, print what was bound and
 *                  what was refused; then accept and close every TCP connection and echo every datagram back to its
 *                  sender, until stdin closes
 *   probe          read batches of targets, one JSON line each, and answer each batch with one JSON line: TCP connects
 *                  all at once (non-blocking), UDP datagrams on connected sockets that wait for their echo, resent a
 *                  few times within the timeout, since one lost datagram must not read as "blocked"
 *
 * A TCP connect that is refused (RST) or a UDP datagram answered by ICMP port unreachable (ECONNREFUSED on the
 * connected socket) reached its destination's stack: that is "reached" as much as an accepted connection is.
 */
import { pythonPath } from "./probe-script.ts";

export const REACH_PY = String.raw`
import errno, json, select, socket, sys, time

def ename(e): return errno.errorcode.get(e, str(e))

def listen(p):
    socks, bound, failed = [], [], []
    for addr in p["addrs"]:
        for t in p["ports"]:
            kind = socket.SOCK_STREAM if t["proto"] == "tcp" else socket.SOCK_DGRAM
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((addr, t["port"]))
                if kind == socket.SOCK_STREAM: s.listen(64)
                s.setblocking(False); socks.append(s); bound.append({"addr": addr, **t})
            except OSError as e:
                s.close(); failed.append({"addr": addr, **t, "errno": ename(e.errno)})
    print(json.dumps({"bound": bound, "failed": failed}), flush=True)
    while True:
        r, _, _ = select.select(socks + [sys.stdin], [], [])
        for s in r:
            if s is sys.stdin:
                if not sys.stdin.readline(): return
                continue
            try:
                if s.type == socket.SOCK_STREAM:
                    c, _ = s.accept(); c.close()
                else:
                    d, a = s.recvfrom(2048); s.sendto(d, a)
            except OSError:
                pass

def probe_batch(b):
    timeout, tries = b["timeoutMs"] / 1000.0, max(1, b["udpTries"])
    out, tcp, udp = {}, {}, {}
    start = time.time()
    for t in b["targets"]:
        kind = socket.SOCK_STREAM if t["proto"] == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind); s.setblocking(False)
        try:
            if t.get("src"): s.bind((t["src"], 0))
            if kind == socket.SOCK_STREAM:
                e = s.connect_ex((t["addr"], t["port"]))
                if e not in (0, errno.EINPROGRESS): raise OSError(e, "")
                tcp[s] = t
            else:
                s.connect((t["addr"], t["port"])); udp[s] = t
        except OSError as e:
            out[t["key"]] = {"reached": False, "how": ename(e.errno), "ms": 0}; s.close()
    token = {s: ("%s %f" % (t["key"], start)).encode() for s, t in udp.items()}
    sent = {s: 0 for s in udp}
    deadline = start + timeout
    def ms(): return round((time.time() - start) * 1000)
    def resend():
        now = time.time()
        for s in list(udp):
            if sent[s] < tries and now >= start + sent[s] * timeout / tries:
                try: s.send(token[s]); sent[s] += 1
                except OSError as e: finish_udp(s, e.errno)
    def finish_udp(s, e):
        t = udp.pop(s)
        if e is None: out[t["key"]] = {"reached": True, "how": "echo after %d sent" % sent[s], "ms": ms()}
        elif e == errno.ECONNREFUSED: out[t["key"]] = {"reached": True, "how": "ECONNREFUSED (port unreachable)", "ms": ms()}
        else: out[t["key"]] = {"reached": False, "how": ename(e), "ms": ms()}
        s.close()
    resend()
    while (tcp or udp) and time.time() < deadline:
        step = min(deadline, time.time() + timeout / tries) - time.time()
        r, w, _ = select.select(list(udp), list(tcp), [], max(0, step))
        for s in w:
            t = tcp.pop(s); e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if e == 0: out[t["key"]] = {"reached": True, "how": "connected", "ms": ms()}
            elif e == errno.ECONNREFUSED: out[t["key"]] = {"reached": True, "how": "ECONNREFUSED (RST)", "ms": ms()}
            else: out[t["key"]] = {"reached": False, "how": ename(e), "ms": ms()}
            s.close()
        for s in r:
            try:
                d = s.recv(2048)
                if d == token[s]: finish_udp(s, None)
            except OSError as e:
                finish_udp(s, e.errno)
        resend()
    for s, t in tcp.items():
        out[t["key"]] = {"reached": False, "how": "no answer in %d ms" % b["timeoutMs"], "ms": ms()}; s.close()
    for s, t in udp.items():
        out[t["key"]] = {"reached": False, "how": "no echo to %d datagrams in %d ms" % (sent[s], b["timeoutMs"]), "ms": ms()}; s.close()
    return out

def probe(p):
    for line in sys.stdin:
        print(json.dumps(probe_batch(json.loads(line))), flush=True)

{"listen": listen, "probe": probe}[sys.argv[1]](json.loads(sys.argv[2]))
`;

/** As probe-script.ts runs its program: -I (nothing from the context's environment), -S (no site module). */
export function reachArgv(mode: "listen" | "probe", params: unknown): string[] {
  return [pythonPath(), "-I", "-S", "-c", REACH_PY, mode, JSON.stringify(params)];
}
