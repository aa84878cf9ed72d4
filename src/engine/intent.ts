/**
 * Who is working on a record: a process records its pid and start time with a half-done operation, so gc can
 * tell a crashed operation (owner gone) from one still running (leave it alone). The start time guards against
 * pid reuse.
 */
import { readFileSync } from "node:fs";
import type { OpMark } from "../model/records.ts";

export function opMark(op: OpMark["op"]): OpMark {
  return { op, pid: process.pid, start: processStart(process.pid) ?? "" };
}

/** Field 22 of /proc/PID/stat (start time in clock ticks); undefined for a missing or zombie process. */
export function processStart(pid: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // comm (field 2) may contain spaces and parentheses: the fields after it start at the last ')'.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  if (fields[0] === "Z" || fields[0] === "X") return undefined;
  return fields[19];
}

/** A mark whose process still runs (and is the same process). */
export function ownerAlive(mark: OpMark | undefined): boolean {
  if (!mark) return false;
  if (mark.pid === process.pid) return true;
  const start = processStart(mark.pid);
  return start !== undefined && (mark.start === "" || start === mark.start);
}
