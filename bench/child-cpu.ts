/**
 * CPU time of this process's reaped children (getrusage(RUSAGE_CHILDREN)), for figures a loaded machine does not
 * bend: a process waiting for a core gets longer in wall time, not in CPU time.
 */
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
