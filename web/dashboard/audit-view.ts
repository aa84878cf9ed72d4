/** The audit section: the seed's table per level, the per-context rows, the evidence of a clicked cell. */
import { type AuditReport, CELL_KEYS, CELL_TITLES, type CellKey, levelRows } from "./audit-levels.ts";
import { byId, el, getJson, verdict } from "./dom.ts";

interface AuditRunView {
  state: "never" | "running" | "done" | "failed";
  startedAt?: string;
  finishedAt?: string;
  report?: AuditReport;
  error?: string;
}

/** Contexts up to which opening the page starts the first audit by itself. */
const AUTO_AUDIT_MAX = 50;

export class AuditView {
  private report: AuditReport | undefined;
  private polling: number | undefined;

  constructor() {
    byId("audit-run").addEventListener("click", () => void this.run());
  }

  /**
   * Show the engine's last run. With none yet, a small host gets one at once (a few seconds for a handful of
   * contexts); a large one waits for the button, since the probes run in every context and take minutes at 1000.
   */
  async open(contexts: number): Promise<void> {
    const view = await getJson<AuditRunView>("/ui/audit");
    if (view.state === "never" && contexts <= AUTO_AUDIT_MAX) return this.run();
    this.show(view);
  }

  private async run(): Promise<void> {
    this.show(await getJson<AuditRunView>("/ui/audit", { method: "POST" }));
  }

  private show(view: AuditRunView): void {
    const state = byId("audit-state");
    if (view.state === "never") state.textContent = "not measured yet: the probes run in every context";
    else if (view.state === "running") {
      state.textContent = `measuring since ${time(view.startedAt)}…`;
      window.clearTimeout(this.polling);
      this.polling = window.setTimeout(() => void this.poll(), 1000);
    } else if (view.state === "failed") state.textContent = `audit failed: ${view.error}`;
    else if (view.state === "done")
      state.textContent = `measured ${time(view.finishedAt)}: ${view.report?.ok ? "every context behaves as its level promises" : "DIFFERENCES FOUND"}`;
    (byId("audit-run") as HTMLButtonElement).disabled = view.state === "running";
    if (view.report) this.render(view.report);
  }

  private async poll(): Promise<void> {
    this.show(await getJson<AuditRunView>("/ui/audit"));
  }

  private render(report: AuditReport): void {
    this.report = report;
    const header = (first: string[]) =>
      el(
        "tr",
        {},
        ...first.map((h) => el("th", {}, h)),
        ...CELL_KEYS.map((k) => el("th", {}, CELL_TITLES[k])),
        el("th", {}, "row"),
      );
    byId("audit-levels").replaceChildren(
      el("caption", {}, "per level (the seed's table)"),
      header(["level", "contexts"]),
      ...levelRows(report).map((row) =>
        el(
          "tr",
          { "data-level": row.level },
          el("td", {}, el("span", { class: `badge level-${row.level}` }, row.level)),
          el("td", {}, row.contexts.join(", ")),
          ...CELL_KEYS.map((k) => {
            const cell = row.cells[k];
            const td = el(
              "td",
              {
                class: `cell${cell.ok ? "" : " differs"}`,
                "data-cell": `${row.level}:${k}`,
                title: `expected ${cell.expected}`,
              },
              cell.measured,
            );
            td.addEventListener("click", () => this.evidence(td, row.contexts, k));
            return td;
          }),
          el("td", {}, verdict(row.ok)),
        ),
      ),
    );
    byId("audit-contexts").replaceChildren(
      el("caption", {}, "per context"),
      header(["context", "level"]),
      ...report.contexts.map((c) =>
        el(
          "tr",
          { "data-audit-context": c.name },
          el("td", {}, c.name),
          el("td", {}, el("span", { class: `badge level-${c.level}` }, c.level)),
          ...CELL_KEYS.map((k) => {
            const ok = c.cells[k] === c.expected[k];
            const td = el(
              "td",
              {
                class: `cell${ok ? "" : " differs"}`,
                "data-cell": `${c.name}:${k}`,
                title: `expected ${c.expected[k]}`,
              },
              c.cells[k],
            );
            td.addEventListener("click", () => this.evidence(td, [c.name], k));
            return td;
          }),
          el("td", {}, verdict(c.ok)),
        ),
      ),
      ...(report.skipped.length
        ? [
            el(
              "tr",
              {},
              el("td", { colspan: "7", class: "more" }, `not audited: ${report.skipped.join(", ")}`),
            ),
          ]
        : []),
    );
  }

  private evidence(td: HTMLElement, names: string[], key: CellKey): void {
    for (const s of document.querySelectorAll("td.cell.selected")) s.classList.remove("selected");
    td.classList.add("selected");
    const of = (this.report?.contexts ?? []).filter((c) => names.includes(c.name));
    byId("audit-evidence").replaceChildren(
      el("h3", {}, `Evidence: ${CELL_TITLES[key]}`),
      ...of.flatMap((c) => [
        el("h4", {}, `${c.name} (${c.level}): measured ${c.cells[key]}, expected ${c.expected[key]}`),
        ...c.evidence[key].map((e) => el("pre", { class: "evidence" }, `$ ${e.command}\n${e.result}`)),
      ]),
    );
  }
}

function time(iso: string | undefined): string {
  return iso ? new Date(iso).toLocaleTimeString() : "";
}
