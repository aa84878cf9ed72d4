/** The reach matrix as people read it (one row per ordered pair, one column per probed port) and as JSON. */
import { formatTable } from "../text-table.ts";
import type { ReachCell, ReachReport } from "./reach.ts";
import { portText } from "./reach-plan.ts";

function cellText(c: ReachCell): string {
  if (c.expected === "n/a") return "n/a";
  if (c.ok) return c.measured;
  return `${c.measured.toUpperCase()} (expected ${c.expected})`;
}

export function formatReach(report: ReachReport): string {
  const columns = report.ports.map(portText);
  const rows = new Map<string, ReachCell[]>();
  for (const c of report.cells) {
    const k = `${c.from}\0${c.to}`;
    rows.set(k, [...(rows.get(k) ?? []), c]);
  }
  const body = [...rows.values()].map((cells) => [
    cells[0]!.from,
    cells[0]!.to,
    ...columns.map((col) => {
      const c = cells.find((x) => portText(x) === col);
      return c ? cellText(c) : "";
    }),
  ]);
  const out = [formatTable(["FROM", "TO", ...columns.map((c) => c.toUpperCase())], body)];
  const differing = report.cells.filter((c) => !c.ok);
  if (differing.length) {
    out.push("");
    for (const c of differing)
      out.push(
        `DIFFERS ${c.from} -> ${c.to} ${portText(c)}: measured ${c.measured}, expected ${c.expected} (${c.reason}); ${c.evidence}`,
      );
  }
  if (report.world !== undefined)
    out.push("", `world: ${report.world} (on the host's loopback while the audit ran)`);
  if (report.skipped.length)
    out.push(`not audited (not ready, no IPv4 address or no host-side path): ${report.skipped.join(", ")}`);
  out.push(
    "",
    report.ok
      ? `reach: every cell as the policies say (${report.cells.length} cells)`
      : `reach: DIFFERENCES FOUND (${differing.length} of ${report.cells.length} cells)`,
  );
  return out.join("\n");
}

export function reachJson(report: ReachReport): unknown {
  return {
    ports: report.ports.map(portText),
    world: report.world ?? null,
    cells: report.cells.map((c) => ({
      from: c.from,
      to: c.to,
      src: c.src,
      dst: c.dst,
      port: portText(c),
      expected: c.expected,
      reason: c.reason,
      measured: c.measured,
      evidence: c.evidence,
      ok: c.ok,
    })),
    skipped: report.skipped,
    ok: report.ok,
  };
}
