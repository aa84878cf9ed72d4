/**
 * The reach section (issue 19): `netctx audit --reach --json` run by the engine on demand, shown as one row per
 * ordered pair and port, expected (what the policies say) beside measured, the differences first.
 */
import { byId, el, getJson, verdict } from "./dom.ts";

interface ReachCell {
  from: string;
  to: string;
  port: string;
  expected: string;
  reason: string;
  measured: string;
  evidence: string;
  ok: boolean;
}

interface ReachRunView {
  state: "never" | "running" | "done" | "failed";
  startedAt?: string;
  finishedAt?: string;
  report?: { cells: ReachCell[]; skipped: string[]; ok: boolean };
  error?: string;
}

export class ReachView {
  private polling: number | undefined;

  constructor() {
    byId("reach-run").addEventListener("click", () => void this.show("POST"));
  }

  /** The engine's last measurement; a new one only on the button (it starts listeners in every context). */
  async open(): Promise<void> {
    await this.show("GET");
  }

  private async show(method: "GET" | "POST"): Promise<void> {
    const view = await getJson<ReachRunView>("/ui/reach", { method });
    const state = byId("reach-state");
    window.clearTimeout(this.polling);
    if (view.state === "never") state.textContent = "not measured yet";
    else if (view.state === "running") {
      state.textContent = "measuring…";
      this.polling = window.setTimeout(() => void this.show("GET"), 1000);
    } else if (view.state === "failed") state.textContent = `reach failed: ${view.error}`;
    else {
      const differing = view.report?.cells.filter((c) => !c.ok).length ?? 0;
      state.textContent =
        differing === 0
          ? `measured: every cell as the policies say (${view.report?.cells.length ?? 0} cells)`
          : `measured: DIFFERENCES FOUND (${differing})`;
    }
    (byId("reach-run") as HTMLButtonElement).disabled = view.state === "running";
    if (view.report) this.render(view.report);
  }

  private render(report: NonNullable<ReachRunView["report"]>): void {
    const cells = [...report.cells].sort((a, b) => Number(a.ok) - Number(b.ok));
    byId("reach-cells").replaceChildren(
      el("tr", {}, ...["from", "to", "port", "policies say", "measured", ""].map((h) => el("th", {}, h))),
      ...cells.map((c) =>
        el(
          "tr",
          { "data-reach": `${c.from}>${c.to}:${c.port}`, class: c.ok ? "" : "differs", title: c.evidence },
          el("td", {}, c.from),
          el("td", {}, c.to),
          el("td", {}, c.port),
          el("td", { title: c.reason }, c.expected),
          el("td", {}, c.measured),
          el("td", {}, verdict(c.ok)),
        ),
      ),
      ...(report.skipped.length
        ? [
            el(
              "tr",
              {},
              el("td", { colspan: "6", class: "more" }, `not measured: ${report.skipped.join(", ")}`),
            ),
          ]
        : []),
    );
  }
}
