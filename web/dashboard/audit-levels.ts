/**
 * The audit report as the seed's table: one row per level, each cell what the level's contexts measured (all of
 * them alike, or "mixed"), beside the per-context rows `netctx audit --json` gives.
 */

export const CELL_KEYS = ["devices", "routingTables", "routingCache", "sockets"] as const;
export type CellKey = (typeof CELL_KEYS)[number];

export const CELL_TITLES: Record<CellKey, string> = {
  devices: "devices",
  routingTables: "routing tables",
  routingCache: "routing cache",
  sockets: "sockets",
};

export interface Evidence {
  command: string;
  result: string;
}

export interface ContextAudit {
  name: string;
  level: string;
  cells: Record<CellKey, string>;
  expected: Record<CellKey, string>;
  evidence: Record<CellKey, Evidence[]>;
  escapes: { probe: string; result: string; evidence: string; promised: boolean }[];
  ok: boolean;
}

export interface AuditReport {
  contexts: ContextAudit[];
  skipped: string[];
  ok: boolean;
}

export interface LevelCell {
  measured: string;
  /** What the seed's table promises; a level whose contexts expect different values (l3 with or without its own default route) shows each. */
  expected: string;
  ok: boolean;
}

export interface LevelRow {
  level: string;
  contexts: string[];
  cells: Record<CellKey, LevelCell>;
  ok: boolean;
}

function oneOrMixed(values: string[]): string {
  const distinct = [...new Set(values)];
  return distinct.length === 1 ? distinct[0]! : distinct.join(" / ");
}

export function levelRows(report: AuditReport): LevelRow[] {
  const levels = [...new Set(report.contexts.map((c) => c.level))].sort();
  return levels.map((level) => {
    const of = report.contexts.filter((c) => c.level === level);
    const cells = Object.fromEntries(
      CELL_KEYS.map((k) => [
        k,
        {
          measured: oneOrMixed(of.map((c) => c.cells[k])),
          expected: oneOrMixed(of.map((c) => c.expected[k])),
          ok: of.every((c) => c.cells[k] === c.expected[k]),
        },
      ]),
    ) as Record<CellKey, LevelCell>;
    return { level, contexts: of.map((c) => c.name), cells, ok: of.every((c) => c.ok) };
  });
}
