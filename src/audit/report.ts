/** The audit as people read it: the seed's table layout, then the escape probes; or as markdown. */

import type { Host } from "../host.ts";
import { formatTable } from "../text-table.ts";
import { type AuditReport, runAudit } from "./audit.ts";
import { CELL_KEYS } from "./expected.ts";

const HEADERS = ["devices", "routing tables", "routing cache", "sockets"];

function rows(report: AuditReport): string[][] {
  return report.contexts.map((c) => [
    c.name,
    c.level,
    ...CELL_KEYS.map((k) =>
      c.cells[k] === c.expected[k] ? c.cells[k] : `${c.cells[k]} (expected ${c.expected[k]})`,
    ),
    c.ok ? "ok" : "DIFFERS",
  ]);
}

function escapeRows(report: AuditReport): string[][] {
  return report.contexts.flatMap((c) =>
    c.escapes.map((e) => [
      c.name,
      e.probe,
      e.result,
      e.promised
        ? e.result === "blocked"
          ? "promised blocked"
          : e.result === "inconclusive"
            ? "PROMISED BLOCKED (unproven)"
            : "PROMISED BLOCKED"
        : "",
      e.evidence,
    ]),
  );
}

export function formatAudit(report: AuditReport): string {
  const out = [
    formatTable(["CONTEXT", "LEVEL", ...HEADERS.map((h) => h.toUpperCase()), "ROW"], rows(report)),
    "",
    formatTable(["CONTEXT", "ESCAPE", "RESULT", "PROMISE", "EVIDENCE"], escapeRows(report)),
  ];
  if (report.skipped.length)
    out.push("", `not audited (not ready or no IPv4 address): ${report.skipped.join(", ")}`);
  out.push("", report.ok ? "audit: every context behaves as its level promises" : "audit: DIFFERENCES FOUND");
  return out.join("\n");
}

export function formatAuditMarkdown(report: AuditReport): string {
  const md = (header: string[], body: string[][]) =>
    [header, header.map(() => "---"), ...body]
      .map((r) => `| ${r.map((c) => c.replaceAll("|", "\\|")).join(" | ")} |`)
      .join("\n");
  const evidence = report.contexts.flatMap((c) =>
    CELL_KEYS.flatMap((k) => c.evidence[k].map((e) => [c.name, k, `\`${e.command}\``, e.result])),
  );
  return [
    md(["context", "level", ...HEADERS, "row"], rows(report)),
    "",
    md(["context", "escape", "result", "promise", "evidence"], escapeRows(report)),
    "",
    md(["context", "cell", "command", "result"], evidence),
  ].join("\n");
}

/** JSON for programs: the shape, plus evidence per cell and whether a level promises each escape. */
export function auditJson(report: AuditReport): unknown {
  return {
    contexts: report.contexts.map((c) => ({
      name: c.name,
      level: c.level,
      cells: c.cells,
      expected: c.expected,
      escapes: c.escapes.map((e) => ({
        probe: e.probe,
        result: e.result,
        evidence: e.evidence,
        promised: e.promised,
      })),
      ok: c.ok,
      evidence: c.evidence,
    })),
    skipped: report.skipped,
    ok: report.ok,
  };
}

/** Audit every context of this host and print the table (the end of `netctx demo`). */
export async function printAuditTable(
  host: Host,
  write: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
): Promise<boolean> {
  const report = await runAudit(host);
  write(formatAudit(report));
  return report.ok;
}
