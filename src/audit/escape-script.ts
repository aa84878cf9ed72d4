/**
 * The Python half of the hardening escapes (issue 15), spliced into the probe program (probe-script.ts), which
 * supplies err(), try_() and macb(). Every function tries one thing and returns what the call answered; deciding
 * "blocked" is the auditor's job (escapes.ts), which also checks the targets were alive and reachable in principle.
 *
 *   scan_procs    which processes of this /proc run this very program with a given token (targets are proven
 *                 by their command line, never by a bare pid number)
 *   escape_probes ptrace/pidfd_getfd of the second context's marker, a signal to a host process, abstract unix
 *                 connects to the second context and the host, a /proc/sys/net write, the engine's API, setns
 *                 out of the context's netns, an AF_VSOCK socket, Router/Neighbour Advertisements to a
 *                 second context on the same bridge, and the host's file system (host_fs_probes)
 *                 and netlink requests aimed at other network namespaces by nsid (nsid_probes, netlink-nsid-script.ts)
 *   host_fs_probes a file in a host directory, a connect to a host daemon's socket under /run, a setuid file in
 *                 /tmp, the host's disk (host-fs.ts makes the targets and judges)
 *   serve_until_eof  the loop of the marker and of the host helper: accept, record, report on request
 */
export const ESCAPE_PY = String.raw`
import ctypes, signal, stat

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long
# pidfd_getfd has one number everywhere (new calls are numbered alike); ptrace does not.
SYS_PTRACE = {"x86_64": 101, "aarch64": 117}.get(os.uname().machine, 101)
SYS_PIDFD_GETFD = 438
PTRACE_SEIZE = 0x4206
CLONE_NEWNET = 0x40000000

def syscall(nr, *args):
    # Every argument as a long: ptrace is variadic, and an int would leave the upper half of a register undefined.
    r = LIBC.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    if r < 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
    return r

def in_child(fn):
    # setns and ptrace change or tie the calling process: a forked child does them and reports through a pipe.
    # A tracer that exits detaches its tracee, so a seized marker runs on untouched.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                v = fn(); out = {"ok": True, **({"value": str(v)} if v is not None else {})}
            except OSError as e: out = {"ok": False, "errno": err(e)}
            except Exception as e: out = {"ok": False, "errno": str(e)}
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk: break
        data += chunk
    os.close(r); os.waitpid(pid, 0)
    try: return json.loads(data)
    except ValueError: return {"ok": False, "errno": "child gave no answer"}

def scan_procs(wanted):
    # A process is a target only if it runs this program (same flags and -c text) in the wanted mode with the token in
    # its parameters. "self" says whether the scan saw this very process: one that cannot proves nothing by finding none.
    me = open("/proc/self/cmdline", "rb").read().split(b"\0")
    k = me.index(b"-c") + 2
    found = dict((w["token"], []) for w in wanted)
    scanned, self_seen, mypid = 0, False, os.getpid()
    try: entries = os.listdir("/proc")
    except OSError as e: return {"found": found, "scanned": 0, "self": False, "error": err(e)}
    for d in entries:
        if not d.isdigit(): continue
        try: a = open("/proc/%s/cmdline" % d, "rb").read().split(b"\0")
        except OSError: continue
        scanned += 1
        if int(d) == mypid: self_seen = True
        if len(a) > k + 1 and a[1:k] == me[1:k]:
            for w in wanted:
                if a[k] == w["mode"].encode() and w["token"].encode() in a[k + 1]:
                    found[w["token"]].append(int(d))
    return {"found": found, "scanned": scanned, "self": self_seen}

def steal_fd(pid, fd):
    pfd = os.pidfd_open(pid)
    try:
        n = syscall(SYS_PIDFD_GETFD, pfd, fd, 0)
    finally:
        os.close(pfd)
    try:
        s = socket.socket(fileno=n)
    except OSError:
        os.close(n); raise
    try:
        return "%s:%d" % s.getsockname()[:2]
    finally:
        s.close()

def seize(pid):
    syscall(SYS_PTRACE, PTRACE_SEIZE, pid, 0, 0)

def ptrace_probe(t, scan):
    pids = scan["found"].get(t["token"], [])
    attempts = []
    for pid in pids:
        attempts.append(dict(try_("pidfd_getfd(pidfd_open(%d), %d)" % (pid, t["fd"]), lambda: steal_fd(pid, t["fd"])), verified=True))
        r = in_child(lambda: seize(pid))
        attempts.append(dict(r, call="ptrace(PTRACE_SEIZE, %d)" % pid, verified=True))
    if not pids:
        # Not visible here: the host's number may still name it (a shared PID namespace behind a hidden /proc).
        # Only a stolen socket on the marker's port counts then; the number may be another process here.
        hp = t["hostPid"]
        attempts.append(dict(try_("pidfd_getfd(pidfd_open(%d), %d) [the host's pid, not visible here]" % (hp, t["fd"]), lambda: steal_fd(hp, t["fd"])), verified=False))
    return {"visible": pids, "attempts": attempts}

def signal_probe(h, scan):
    # SIGWINCH: ignored by default, so a blind try at a number that names some other process here harms nothing.
    pids = scan["found"].get(h["token"], [])
    if pids:
        return dict(try_("kill(%d, SIGWINCH)" % pids[0], lambda: os.kill(pids[0], signal.SIGWINCH)), verified=True)
    hp = h["hostPid"]
    return dict(try_("kill(%d, SIGWINCH) [the host's pid, not visible here]" % hp, lambda: os.kill(hp, signal.SIGWINCH)), verified=False)

def abstract_probe(name, token):
    def f():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(1.0)
        try:
            s.connect("\0" + name); s.sendall((token + "\n").encode())
        finally:
            s.close()
    return try_("connect(AF_UNIX, @%s)" % name, f)

def sysctl_probe(paths):
    # The value read is written back unchanged: the write itself is the measurement.
    for path in paths:
        if not os.path.exists(path): continue
        def f():
            fd = os.open(path, os.O_RDWR)
            try:
                v = os.pread(fd, 64, 0)
                os.pwrite(fd, v, 0)
                return "wrote back %s" % v.decode().strip()
            finally:
                os.close(fd)
        return try_("open(%s, O_RDWR), write its value back" % path, f)
    gone = not os.path.isdir("/proc/sys/net")
    return {"call": "stat " + ", ".join(paths), "ok": False, "errno": "ENOENT", "value": "no /proc/sys/net here" if gone else "none of them here", "noProcSysNet": gone}

def engine_probe(e):
    out = []
    for method, url in (("GET", "/v1/health"), ("POST", "/v1/settle")):
        def f():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(2.0)
            try:
                s.connect(e["path"])
                # HTTP/1.0: the answer comes whole, without chunks, and the connection closes after it.
                s.sendall(("%s %s HTTP/1.0\r\nHost: netctx\r\nContent-Length: 0\r\n\r\n" % (method, url)).encode())
                data = b""
                while len(data) < 4096:
                    chunk = s.recv(4096)
                    if not chunk: break
                    data += chunk
            finally:
                s.close()
            head = data.split(b"\r\n", 1)[0].decode(errors="replace")
            body = " ".join(data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").split()) if head else ""
            return ("%s %s" % (head, body[:100])).strip() or "closed without an answer"
        out.append(try_("%s %s on unix:%s" % (method, url, e["path"]), f))
    return out

def enter_netns(fd):
    if LIBC.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
    return os.stat("/proc/thread-self/ns/net").st_ino

def setns_probe(targets, scan):
    attempts = []
    for t in targets:
        paths = list(t.get("paths", []))
        pr = t.get("proc")
        if pr:
            pids = scan["found"].get(pr["token"], [])
            paths = ["/proc/%d/ns/net" % p for p in pids] + paths if pids else paths + ["/proc/%d/ns/net" % pr["hostPid"]]
        for path in paths:
            call = "setns(open(%s), CLONE_NEWNET) [%s]" % (path, t["what"])
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as e:
                attempts.append({"call": call, "ok": False, "errno": err(e), "want": t["ino"]}); continue
            try:
                r = in_child(lambda: enter_netns(fd))
            finally:
                os.close(fd)
            attempts.append(dict(r, call=call, want=t["ino"]))
    return attempts

def ndisc_probe(n):
    # Through a raw ICMPv6 socket: the kernel fills in the checksum and resolves the peer's MAC, so only the message
    # body is ours. Hop limit 255, as ND demands.
    def send(src, dst, body, scoped):
        idx = socket.if_nametoindex(n["ifname"]) if scoped else 0
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        try:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
            s.bind((src, 0, 0, idx)); s.sendto(body, (dst, 0, 0, idx))
        finally:
            s.close()
    mac = macb(n["mac"])
    # Router lifetime 30 s (a leftover expires by itself); no hop limit, MTU or prefix that would change more.
    ra = struct.pack("!BBHBBHII", 134, 0, 0, 0, 0, 30, 0, 0) + struct.pack("!BB", 1, 1) + mac
    # Override flag, target = the gateway, Target Link-Layer Address = this context's MAC.
    na = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + socket.inet_pton(socket.AF_INET6, n["gateway6"]) + struct.pack("!BB", 2, 1) + mac
    out = {"ra": try_("ICMPv6 RA (router lifetime 30 s) %s -> %s" % (n["ll"], n["peerLl"]), lambda: send(n["ll"], n["peerLl"], ra, True))}
    what = "ICMPv6 NA (override: %s is-at %s)" % (n["gateway6"], n["mac"])
    # From its link-local address the NA takes the bridge; from its own global address it may be one a bridge
    # shortcut carries straight to the peer.
    out["na"] = [try_("%s %s -> %s" % (what, n["ll"], n["peerLl"]), lambda: send(n["ll"], n["peerLl"], na, True))]
    if n.get("global") and n.get("peerGlobal"):
        out["na"].append(try_("%s %s -> %s" % (what, n["global"], n["peerGlobal"]), lambda: send(n["global"], n["peerGlobal"], na, False)))
    # When they left (the wall clock is the host's too): the auditor gives them time to arrive from here on.
    out["sentAt"] = time.time()
    return out

def host_write_probe(w, token):
    # The directory's inode goes back too: a refused create in some other directory of that name proves nothing.
    d = w["dir"]; path = d + "/" + w["name"]
    def f():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try: os.write(fd, token.encode())
        finally: os.close(fd)
    out = try_("open(%s, O_WRONLY|O_CREAT|O_EXCL)" % path, f)
    try: out["ino"] = os.stat(d).st_ino
    except OSError as e: out["dirError"] = err(e)
    return out

def daemon_socket_probe(path, token):
    def f():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(1.0)
        try:
            s.connect(path); s.sendall((token + "\n").encode())
            return s.recv(256).decode(errors="replace").strip() or "connected, no answer"
        finally:
            s.close()
    return try_("connect(AF_UNIX, %s)" % path, f)

def mode_of(path): return "mode %04o" % (os.lstat(path).st_mode & 0o7777)

def setuid_probe(t):
    # Empty files: one that keeps its setuid bit runs nothing (execve refuses an empty file) until the auditor
    # removes it. O_EXCL and O_NOFOLLOW: /tmp is shared, its names are anybody's to plant.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    a, b = t["chmod"], t["create"]
    out = {"create": try_("open(%s, O_CREAT|O_EXCL, 0644)" % a, lambda: os.close(os.open(a, flags, 0o644)))}
    def chmod():
        os.chmod(a, 0o4755); return mode_of(a)
    # chmod follows links: only a file this probe made is chmod'ed, never whatever else might sit at that name.
    if out["create"]["ok"]: out["chmod"] = try_("chmod(%s, 04755)" % a, chmod)
    else: out["chmod"] = {"call": "chmod(%s, 04755)" % a, "ok": False, "errno": "not tried: the file was not made"}
    def create():
        os.close(os.open(b, flags, 0o4755)); return mode_of(b)
    out["open"] = try_("open(%s, O_CREAT|O_EXCL, 04755)" % b, create)
    return out

def open_disk(path):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISBLK(st.st_mode): raise Exception("not a block device")
        return "block device %d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
    finally:
        os.close(fd)

def block_probe(b):
    # Every block device under its /dev (links not followed), then the host's disk by its path, the first one listed,
    # and a node of its own in /tmp with the disk's numbers (a device node works whatever the mount it is on says,
    # unless that mount is nodev).
    listed, scanned, errors = [], 0, []
    for root, _, files in os.walk("/dev", onerror=lambda e: errors.append("%s: %s" % (e.filename, err(e)))):
        for n in files:
            p = os.path.join(root, n); scanned += 1
            try:
                if stat.S_ISBLK(os.lstat(p).st_mode): listed.append(p)
            except OSError: pass
    paths = [b["path"]] + [p for p in listed[:1] if p != b["path"]]
    opens = [try_("open(%s, O_RDONLY|O_NONBLOCK)" % p, lambda p=p: open_disk(p)) for p in paths]
    node = b["node"]; major, minor = b["dev"]
    def via_node():
        os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(major, minor))
        try: return open_disk(node)
        finally: os.unlink(node)
    out = {"listed": listed, "scanned": scanned, "opens": opens, "node": try_("mknod(%s, S_IFBLK, %d:%d), open(O_RDONLY|O_NONBLOCK)" % (node, major, minor), via_node)}
    if errors: out["error"] = "; ".join(errors[:3])
    return out

def host_fs_probes(f, token):
    out = {"setuid": setuid_probe(f["setuid"])}
    if f.get("write"): out["write"] = host_write_probe(f["write"], token)
    out["sockets"] = [daemon_socket_probe(d["path"], token) for d in f["sockets"]]
    if f.get("block"): out["block"] = block_probe(f["block"])
    return out

def escape_probes(e):
    out = {}
    # First: the Advertisements travel (neighbour resolution included) while everything else runs.
    if e.get("ndisc"): out["ndisc"] = ndisc_probe(e["ndisc"])
    scan = scan_procs(e["tokens"])
    out["scan"] = {"scanned": scan["scanned"], "self": scan["self"], "found": scan["found"], **({"error": scan["error"]} if "error" in scan else {})}
    if e.get("ptrace"): out["ptrace"] = ptrace_probe(e["ptrace"], scan)
    out["signal"] = signal_probe(e["host"], scan)
    out["abstractHost"] = abstract_probe(e["host"]["abstract"], e["token"])
    if e.get("abstractOther"): out["abstractOther"] = abstract_probe(e["abstractOther"], e["token"])
    out["sysctl"] = sysctl_probe(e["sysctlPaths"])
    if e.get("engine"): out["engine"] = engine_probe(e["engine"])
    if e.get("setns"): out["setns"] = setns_probe(e["setns"], scan)
    out["hostFs"] = host_fs_probes(e["hostFs"], e["token"])
    if e.get("nsid"): out["nsid"] = nsid_probes(e["nsid"])
    out["vsock"] = try_("socket(AF_VSOCK, SOCK_STREAM)", lambda: socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close())
    return out

def abstract_listener(name):
    # The listener connects to itself once: a listener its own exec cannot reach proves nothing when another one
    # cannot reach it either.
    if not name: return None, None
    try:
        a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); a.bind("\0" + name); a.listen(16)
    except OSError as e:
        return None, err(e)
    try:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.settimeout(1.0); c.connect("\0" + name); c.close()
        a.settimeout(1.0); a.accept()[0].close(); a.settimeout(None)
        return a, "ok"
    except OSError as e:
        return a, err(e)

def serve_until_eof(listeners, report):
    # TCP connections are closed at once; unix ones are read for the connector's token. A line on stdin asks for a
    # report line; end of stdin ends the process.
    conns, accepted, buf = [], [], b""
    for l in listeners: l.setblocking(False)
    while True:
        r, _, _ = select.select([0] + listeners + conns, [], [])
        for x in r:
            if x in listeners:
                try:
                    c = x.accept()[0]
                    if c.family == socket.AF_UNIX: c.setblocking(False); conns.append(c)
                    else: c.close()
                except OSError: pass
            elif x in conns:
                try: d = x.recv(256)
                except OSError: d = b""
                accepted.append(d.decode(errors="replace").strip() or "(connected, sent nothing)")
                conns.remove(x); x.close()
        if 0 in r:
            d = os.read(0, 4096)
            if not d: return
            buf += d
            while b"\n" in buf:
                buf = buf.split(b"\n", 1)[1]
                print(json.dumps(dict(report(), accepted=accepted)), flush=True)

def host(p):
    # The host's stand-in: a process outside every context, with an abstract socket and a SIGWINCH counter.
    got = []
    signal.signal(signal.SIGWINCH, lambda n, f: got.append(n))
    a, check = abstract_listener(p["abstract"])
    print(json.dumps({"pid": os.getpid(), "abstract": check}), flush=True)
    serve_until_eof([a] if a else [], lambda: {"signals": len(got), "listening": a is not None})
`;
