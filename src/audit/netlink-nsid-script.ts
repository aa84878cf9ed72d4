/**
 * The Python half of the netlink-other-netns probe, spliced into the probe program (probe-script.ts). Raw
 * rtnetlink: every request on a socket of its own, its answer the errno name of the ack, or of a dump's
 * NLMSG_DONE (a dump carries its error there, not in an NLMSG_ERROR). netlink-nsid.ts makes the targets and judges.
 *
 *   nsid_probes   list the nsids this netns holds (a link dump first: the kernel assigns an nsid to the namespace
 *                 of a veth's peer as it lists the veth), then through each: a link made there (an ifb: it goes
 *                 in a sixth of a bridge's time, and every delete holds the whole machine's rtnl lock)
 *                 (IFLA_TARGET_NETNSID), a macvlan here on the auditor's marker there (IFLA_LINK_NETNSID; through
 *                 the nsid the auditor found for the target only: the marker's index means nothing elsewhere), a
 *                 link dump there, the marker deleted there; and, when asked, the same create and delete with no
 *                 target (its own stack), the control that shows the requests are sound
 */
export const NSID_PY = String.raw`
NL_NEWLINK, NL_DELLINK, NL_GETLINK, NL_GETNSID = 16, 17, 18, 90
NL_REQUEST, NL_ACK, NL_DUMP, NL_CREATE, NL_EXCL = 1, 4, 0x300, 0x400, 0x200
NL_ERROR, NL_DONE = 2, 3
IFLA_IFNAME, IFLA_LINK, IFLA_LINKINFO, IFLA_LINK_NETNSID, IFLA_TARGET_NETNSID = 3, 5, 18, 37, 46
IFLA_INFO_KIND, NETNSA_NSID = 1, 1
NL_IFINFO = struct.pack("BxHiII", 0, 0, 0, 0, 0)

def nl_attr(t, data):
    n = 4 + len(data)
    return struct.pack("HH", n, t) + data + b"\0" * ((4 - n % 4) % 4)

def nl_str(t, v): return nl_attr(t, v.encode() + b"\0")
def nl_s32(t, v): return nl_attr(t, struct.pack("i", v))
def nl_kind(k): return nl_attr(IFLA_LINKINFO, nl_str(IFLA_INFO_KIND, k))
def nl_target(nsid): return nl_s32(IFLA_TARGET_NETNSID, nsid) if nsid is not None else b""

def nl_talk(kind, flags, body):
    # The errno name of the answer ("OK" for none) and the messages before it (payloads, after nlmsghdr).
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    try:
        s.settimeout(5.0)
        s.bind((0, 0))
        s.send(struct.pack("IHHII", 16 + len(body), kind, flags | NL_REQUEST, 1, 0) + body)
        out = []
        while True:
            data = s.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                n, t = struct.unpack_from("IH", data, off)
                if n < 16: raise Exception("malformed netlink answer")
                if t in (NL_ERROR, NL_DONE):
                    e = -struct.unpack_from("i", data, off + 16)[0] if n >= 20 else 0
                    return ("OK" if e == 0 else errno.errorcode.get(e, str(e))), out
                out.append(data[off + 16:off + n])
                off += (n + 3) & ~3
    finally:
        s.close()

def nl_call(what, kind, flags, body):
    try:
        answer, msgs = nl_talk(kind, flags, body)
    except Exception as e:
        return {"call": what, "ok": False, "errno": err(e)}, []
    return ({"call": what, "ok": True} if answer == "OK" else {"call": what, "ok": False, "errno": answer}), msgs

def nl_link_names(msgs):
    names = []
    for m in msgs:
        off = 16
        while off + 4 <= len(m):
            n, t = struct.unpack_from("HH", m, off)
            if n < 4: break
            if t == IFLA_IFNAME: names.append(m[off + 4:off + n].split(b"\0")[0].decode(errors="replace"))
            off += (n + 3) & ~3
    return names

def nl_nsids():
    listed, _ = nl_call("RTM_GETLINK dump", NL_GETLINK, NL_DUMP, NL_IFINFO)
    got, msgs = nl_call("RTM_GETNSID dump", NL_GETNSID, NL_DUMP, b"\0\0\0\0")
    found = []
    for m in msgs:
        off = 4
        while off + 4 <= len(m):
            n, t = struct.unpack_from("HH", m, off)
            if n < 4: break
            if t == NETNSA_NSID: found.append(struct.unpack_from("i", m, off + 4)[0])
            off += (n + 3) & ~3
    return listed, got, found

def nl_new_link(name, nsid):
    where = " IFLA_TARGET_NETNSID=%d" % nsid if nsid is not None else ""
    return nl_call("RTM_NEWLINK ifb %s%s" % (name, where), NL_NEWLINK, NL_ACK | NL_CREATE | NL_EXCL, NL_IFINFO + nl_target(nsid) + nl_str(IFLA_IFNAME, name) + nl_kind("ifb"))[0]

def nl_del_link(name, nsid):
    where = " IFLA_TARGET_NETNSID=%d" % nsid if nsid is not None else ""
    return nl_call("RTM_DELLINK %s%s" % (name, where), NL_DELLINK, NL_ACK, NL_IFINFO + nl_target(nsid) + nl_str(IFLA_IFNAME, name))[0]

def nsid_try(n, nsid):
    t = {"nsid": nsid, "undo": []}
    t["create"] = nl_new_link(n["create"], nsid)
    # What an escape made goes at once, through the same path; the auditor removes whatever is left.
    if t["create"]["ok"]: t["undo"].append(nl_del_link(n["create"], nsid))
    if nsid == n.get("nsid"):
        t["macvlan"] = nl_call("RTM_NEWLINK macvlan %s IFLA_LINK=%d IFLA_LINK_NETNSID=%d (on %s there)" % (n["macvlan"], n["markerIndex"], nsid, n["marker"]),
            NL_NEWLINK, NL_ACK | NL_CREATE | NL_EXCL,
            NL_IFINFO + nl_str(IFLA_IFNAME, n["macvlan"]) + nl_s32(IFLA_LINK, n["markerIndex"]) + nl_s32(IFLA_LINK_NETNSID, nsid) + nl_kind("macvlan"))[0]
        if t["macvlan"]["ok"]: t["undo"].append(nl_del_link(n["macvlan"], None))
    dump, msgs = nl_call("RTM_GETLINK dump IFLA_TARGET_NETNSID=%d" % nsid, NL_GETLINK, NL_DUMP, NL_IFINFO + nl_target(nsid))
    if dump["ok"]:
        names = nl_link_names(msgs)
        dump["value"] = "%d links%s" % (len(names), ", the marker %s among them" % n["marker"] if n["marker"] in names else "")
    t["dump"] = dump
    # Last: once the marker is gone the macvlan has nothing to sit on.
    t["delete"] = nl_del_link(n["marker"], nsid)
    return t

def nsid_probes(n):
    listed, got, nsids = nl_nsids()
    out = {"listed": listed, "nsids": got, "found": nsids, "tries": [nsid_try(n, nsid) for nsid in nsids]}
    if n.get("control"):
        made = nl_new_link(n["control"], None)
        out["control"] = {"create": made, "delete": nl_del_link(n["control"], None) if made["ok"] else {"call": "RTM_DELLINK %s" % n["control"], "ok": False, "errno": "not tried: the link was not made"}}
    return out
`;
