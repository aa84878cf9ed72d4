/**
 * CPU time of this process's reaped children (getrusage(RUSAGE_CHILDREN)) and of a running process, for figures a loaded machine does not
 * bend: a process waiting for a core gets longer in wall time, not in CPU time.
 */
import { readFileSync } from "node:fs";
import koffi from "koffi";

const RUSAGE_CHILDREN = -1;
/** struct rusage on x86_64: two timevals (16 bytes each), then 14 longs. */
const RUSAGE_SIZE = 144;

const getrusage = koffi.load("libc.so.6").func("int getrusage(int who, void *usage)") as (
  who: number,
  usage: Uint8Array,
) => number;

/** User + system milliseconds of every child reaped so far. */
export function childrenCpuMs(): number {
  const buf = new Uint8Array(RUSAGE_SIZE);
  if (getrusage(RUSAGE_CHILDREN, buf) !== 0) throw new Error("getrusage(RUSAGE_CHILDREN) failed");
  const v = new DataView(buf.buffer);
  const ms = (at: number) =>
    Number(v.getBigInt64(at, true)) * 1000 + Number(v.getBigInt64(at + 8, true)) / 1000;
  return ms(0) + ms(16);
}

/**
 * User + system milliseconds of the running process `pid`, every thread of it (/proc/PID/stat utime and stime, in
 * clock ticks of 10 ms: USER_HZ is 100 on Linux). A packet's softirq work done on its way out of a send is charged
 * to the sender.
 */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name in parentheses may hold spaces: fields count from after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}
