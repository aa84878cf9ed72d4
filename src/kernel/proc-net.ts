/**
 * A network namespace's own counters from /proc/thread-self/net: `dev` (every device's rtnl_link_stats64, as
 * `ip -s link` shows them) and `snmp` (the TCP MIB's CurrEstab: connections in ESTABLISHED or CLOSE_WAIT, v4 and v6,
 * kept by the kernel as a counter instead of found by walking sockets). sock_diag would walk the host-wide TCP hash
 * table for each namespace (~2 ms here); these files cost ~20-30 us each.
 * The files are opened inside a setns window (they describe the netns of the thread that opens them); an open one
 * holds its netns, and with it a removed context's veth, alive, so only the resident engine keeps them open
 * (NetnsCounterFiles), closing them when the context goes.
 */
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { KernelError } from "./errors.ts";
import * as ffi from "./ffi.ts";
import { inNetns } from "./netns.ts";

/** Where kept counter files go (NetnsCounterFiles.open): above select()'s FD_SETSIZE. */
const HIGH_FDS = 1024;

/** A device's counters as the device itself sees them (its rx is what it received). */
export interface DeviceCounters {
  rxBytes: number;
  rxPackets: number;
  rxDropped: number;
  txBytes: number;
  txPackets: number;
  txDropped: number;
}

export interface NetnsCounters {
  devices: Map<string, DeviceCounters>;
  /** TCP connections open (the MIB's CurrEstab). */
  tcpCurrEstab: number;
}

/**
 * /proc/net/dev: two header lines, then `NAME: rx bytes packets errs drop fifo frame compressed multicast` and
 * `tx bytes packets errs drop fifo colls carrier compressed`.
 */
export function parseNetDev(text: string): Map<string, DeviceCounters> {
  const out = new Map<string, DeviceCounters>();
  for (const line of text.split("\n").slice(2)) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const f = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .map(Number);
    if (f.length < 16) continue;
    out.set(line.slice(0, colon).trim(), {
      rxBytes: f[0]!,
      rxPackets: f[1]!,
      rxDropped: f[3]!,
      txBytes: f[8]!,
      txPackets: f[9]!,
      txDropped: f[11]!,
    });
  }
  return out;
}

/** /proc/net/snmp: a `Tcp:` line of names, then one of values. */
export function parseTcpCurrEstab(text: string): number {
  const lines = text.split("\n").filter((l) => l.startsWith("Tcp:"));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  const i = names.indexOf("CurrEstab");
  return i < 0 ? 0 : Number(values[i] ?? 0);
}

let buffer = Buffer.alloc(16 * 1024);

/** The whole file from its start (pread: a /proc seq file read at 0 is generated afresh). */
function slurp(fd: number): string {
  let n = 0;
  for (;;) {
    if (n === buffer.length) {
      const bigger = Buffer.alloc(buffer.length * 2);
      buffer.copy(bigger);
      buffer = bigger;
    }
    const r = readSync(fd, buffer, n, buffer.length - n, n);
    if (r <= 0) break;
    n += r;
  }
  return buffer.toString("latin1", 0, n);
}

/**
 * A netns's two counter files, opened once in a setns window and read again without entering it (~10 us a read,
 * where entering and opening costs ~50-190 us here). An open file holds its netns alive, and with it the context's
 * veth: close it before the netns is deleted (levels/netns-counter-files.ts).
 */
export class NetnsCounterFiles {
  private constructor(private fds: number[]) {}

  static open(path: string): NetnsCounterFiles {
    const fds: number[] = [];
    try {
      inNetns(path, () => {
        fds.push(openSync("/proc/thread-self/net/dev", "r"));
        fds.push(openSync("/proc/thread-self/net/snmp", "r"));
      });
      // Kept at 1024 and up: thousands of them at low numbers would push the sockets libraries open later past
      // FD_SETSIZE, and libnftables select()s on its netlink socket (glibc aborts the process on such an fd_set).
      for (const [i, fd] of fds.entries()) {
        const high = ffi.dupAtLeast(fd, HIGH_FDS);
        if (high < 0) throw new KernelError(`keep ${path} counter files`, ffi.errno());
        closeSync(fd);
        fds[i] = high;
      }
    } catch (err) {
      for (const fd of fds) closeSync(fd);
      throw err;
    }
    return new NetnsCounterFiles(fds);
  }

  read(): NetnsCounters {
    const [dev, snmp] = this.fds;
    if (dev === undefined || snmp === undefined) throw new Error("netns counter files: read after close");
    return { devices: parseNetDev(slurp(dev)), tcpCurrEstab: parseTcpCurrEstab(slurp(snmp)) };
  }

  close(): void {
    for (const fd of this.fds) closeSync(fd);
    this.fds = [];
  }
}

/** The counters of the netns at `path`, its files closed again at once. */
export function netnsCounters(path: string): NetnsCounters {
  const files = NetnsCounterFiles.open(path);
  try {
    return files.read();
  } finally {
    files.close();
  }
}

/** /proc/net/snmp6: one `Name value` pair a line (Ip6*, Icmp6*, Udp6*), per network namespace. */
export function parseSnmp6(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const [name, value] = line.trim().split(/\s+/);
    if (name && value !== undefined) out.set(name, Number(value));
  }
  return out;
}

/** The IPv6 MIB counters of the netns at `path` (Icmp6InRouterAdvertisements: RAs that reached its stack). */
export function netnsSnmp6(path: string): Map<string, number> {
  return parseSnmp6(inNetns(path, () => readFileSync("/proc/thread-self/net/snmp6", "latin1")));
}
