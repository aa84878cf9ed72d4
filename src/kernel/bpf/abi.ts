/**
 * The numbers of the kernel's BPF ABI (include/uapi/linux/bpf.h) that our programs are built from: program and
 * attach types, helper ids, and the offsets of the context structs the programs read and write. One table for every
 * program we assemble (socket policy, publish loopback, bridge shortcut, the bench's), so a number is written once.
 */

export const ProgType = {
  SCHED_CLS: 3,
  CGROUP_SKB: 8,
  CGROUP_SOCK: 9,
  CGROUP_SOCK_ADDR: 18,
  CGROUP_SOCKOPT: 25,
} as const;

export const AttachType = {
  CGROUP_INET_INGRESS: 0,
  CGROUP_INET_EGRESS: 1,
  CGROUP_INET_SOCK_CREATE: 2,
  CGROUP_INET4_BIND: 8,
  CGROUP_INET6_BIND: 9,
  CGROUP_INET4_CONNECT: 10,
  CGROUP_INET6_CONNECT: 11,
  CGROUP_UDP4_SENDMSG: 14,
  CGROUP_UDP6_SENDMSG: 15,
  CGROUP_UDP4_RECVMSG: 19,
  CGROUP_UDP6_RECVMSG: 20,
  /** setsockopt(2) of the cgroup's sockets, before the kernel handles it (prog type CGROUP_SOCKOPT). */
  CGROUP_SETSOCKOPT: 22,
  /** tc ingress of a device through bpf_mprog (kernel 6.6+): target_ifindex instead of a cgroup fd. */
  TCX_INGRESS: 46,
  /** tc egress of a device through bpf_mprog (kernel 6.6+). */
  TCX_EGRESS: 47,
} as const;
export type AttachTypeName = keyof typeof AttachType;

export const Helper = {
  map_lookup_elem: 1,
  map_update_elem: 2,
  l3_csum_replace: 10,
  redirect: 23,
  skb_load_bytes: 26,
  bind: 64,
  fib_lookup: 69,
  /** cgroup v2 id of the skb's socket's cgroup (cgroup-skb and tc programs). */
  skb_cgroup_id: 79,
  get_current_cgroup_id: 80,
  get_netns_cookie: 122,
  redirect_peer: 155,
} as const;

/** bpf_redirect's flag: the frame is received by the target device instead of sent by it. */
export const BPF_F_INGRESS = 1;

/** struct __sk_buff */
export const SkBuff = {
  pktType: 4,
  protocol: 16,
  ifindex: 40,
  data: 76,
  dataEnd: 80,
  /** The receiving socket's bound address (skb->sk->skc_rcv_saddr / sk_v6_rcv_saddr), readable in cgroup skb programs. */
  localIp4: 96,
  localIp6: 116,
} as const;

/** struct bpf_sock_addr */
export const SockAddr = {
  userIp4: 4,
  userIp6: 8,
  userPort: 24,
  protocol: 36,
  msgSrcIp4: 40,
  msgSrcIp6: 44,
  sk: 64,
} as const;

/**
 * struct bpf_sockopt: sk, optval and optval_end are 64-bit pointers (__bpf_md_ptr), the rest __s32. optval is a
 * kernel copy of the caller's buffer, max(optlen, 16) bytes (at most a page): reads are checked against optval_end.
 */
export const SockOpt = {
  sk: 0,
  optval: 8,
  optvalEnd: 16,
  level: 24,
  optname: 28,
  optlen: 32,
  retval: 36,
} as const;

/** struct bpf_sock */
export const Sock = { type: 8, protocol: 12, mark: 16, srcIp4: 24, srcIp6: 28 } as const;

// skb->protocol is __be16; read as a u32 on little-endian the bytes come out swapped.
export const ETH_P_IP_LE = 0x0008;
export const ETH_P_IPV6_LE = 0xdd86;
