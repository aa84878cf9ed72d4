# raw-frame.py IFACE DSTMAC SRCMAC SRCIP DSTIP DPORT COUNT [bypass]: COUNT UDP datagrams in hand-built Ethernet frames
# through an AF_PACKET socket, with PACKET_QDISC_BYPASS when asked (it skips the sending device's qdisc and tc
# egress): the attacks of root inside an l2 context on the data path (forged source MAC and address).
import socket, struct, sys
ifc, dmac, smac, sip, dip, dport, count = sys.argv[1:8]
bypass = len(sys.argv) > 8
def mac(m): return bytes.fromhex(m.replace(':',''))
def csum(b):
    if len(b)%2: b+=b'\0'
    s=sum(struct.unpack('!%dH'%(len(b)//2),b)); s=(s>>16)+(s&0xffff); s+=s>>16; return (~s)&0xffff
payload=b'forged'
udp=struct.pack('!HHHH',40000,int(dport),8+len(payload),0)+payload
ip=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(udp),1,0,64,17,0,socket.inet_aton(sip),socket.inet_aton(dip))
ip=ip[:10]+struct.pack('!H',csum(ip))+ip[12:]
frame=mac(dmac)+mac(smac)+b'\x08\x00'+ip+udp
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)
if bypass: s.setsockopt(263,20,1)  # SOL_PACKET, PACKET_QDISC_BYPASS
s.bind((ifc,0))
refused = 0
for _ in range(int(count)):
    try: s.send(frame)
    except OSError: refused += 1  # ENOBUFS: a hook further down dropped it (with the qdisc bypassed, the drop shows)
print("sent", count, "refused on the way", refused)
