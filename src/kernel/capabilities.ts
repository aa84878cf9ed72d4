/** Capability and socket family numbers as linux/capability.h and linux/socket.h give them (the same on every arch). */

export const CAPABILITY = {
  chown: 0,
  dac_override: 1,
  dac_read_search: 2,
  fowner: 3,
  fsetid: 4,
  kill: 5,
  setgid: 6,
  setuid: 7,
  setpcap: 8,
  net_bind_service: 10,
  net_broadcast: 11,
  net_admin: 12,
  net_raw: 13,
  sys_chroot: 18,
  sys_ptrace: 19,
  sys_admin: 21,
  mknod: 27,
  audit_write: 29,
} as const;

export type Capability = keyof typeof CAPABILITY;

export const SOCKET_FAMILY = {
  unix: 1,
  inet: 2,
  inet6: 10,
  netlink: 16,
  packet: 17,
  vsock: 40,
} as const;

export type SocketFamily = keyof typeof SOCKET_FAMILY;
