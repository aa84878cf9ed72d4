/**
 * Who is at the other end of a unix socket: SO_PEERCRED gives the pid (in our PID namespace), uid and gid the
 * peer had when it connected, and /proc tells which namespaces and cgroup that process lives in.
 */
import { readFileSync, statSync } from "node:fs";
import { KernelError } from "./errors.ts";
import { errno, getsockopt } from "./ffi.ts";

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

export function peerCredentials(fd: number): PeerCredentials {
  const buf = new Uint8Array(12);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, buf, [buf.length]) !== 0)
    throw new KernelError("getsockopt SO_PEERCRED", errno());
  const view = new DataView(buf.buffer);
  return { pid: view.getInt32(0, true), uid: view.getUint32(4, true), gid: view.getUint32(8, true) };
}

/** Inode of a process's namespace of one type ("net", "pid", ...); undefined once the process is gone. */
export function namespaceOf(pid: number | "self", type: string): bigint | undefined {
  try {
    return statSync(`/proc/${pid}/ns/${type}`, { bigint: true }).ino;
  } catch {
    return undefined;
  }
}

/** The process's cgroup v2 path, as our cgroup namespace sees it ("/netctx/shop"). */
export function cgroupOf(pid: number): string | undefined {
  try {
    const line = readFileSync(`/proc/${pid}/cgroup`, "utf8")
      .split("\n")
      .find((l) => l.startsWith("0::"));
    return line?.slice(3);
  } catch {
    return undefined;
  }
}
