/**
 * Sysctls under /proc/sys. Network sysctls belong to the netns of the thread that opens the file, so with a
 * netns path the read or write happens inside a setns window (synchronous fs calls run on this thread).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { invalid } from "../errors.ts";
import { KernelError } from "./errors.ts";
import { inNetns } from "./netns.ts";

/** "net.ipv4.ip_forward" -> /proc/sys/net/ipv4/ip_forward; a key with "/" is taken as a path already. */
export function sysctlPath(key: string): string {
  if (!/^[A-Za-z0-9_./-]+$/.test(key) || key.includes(".."))
    throw invalid("sysctl", `"${key}" is not a sysctl key`);
  return `/proc/sys/${key.includes("/") ? key : key.replaceAll(".", "/")}`;
}

function fsError(op: string, err: unknown): unknown {
  const e = err as NodeJS.ErrnoException;
  return typeof e.errno === "number" ? new KernelError(op, Math.abs(e.errno)) : err;
}

export function readSysctl(key: string, netnsPath?: string): string {
  const path = sysctlPath(key);
  const read = (): string => {
    try {
      return readFileSync(path, "utf8").trim();
    } catch (err) {
      throw fsError(`sysctl ${key}`, err);
    }
  };
  return netnsPath === undefined ? read() : inNetns(netnsPath, read);
}

export function writeSysctl(key: string, value: string, netnsPath?: string): void {
  const path = sysctlPath(key);
  const write = (): void => {
    try {
      writeFileSync(path, value);
    } catch (err) {
      throw fsError(`sysctl ${key}=${value}`, err);
    }
  };
  if (netnsPath === undefined) write();
  else inNetns(netnsPath, write);
}
