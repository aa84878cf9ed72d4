/**
 * The dashboard page: the topology (cytoscape), the contexts with live counters (server-sent events from
 * /ui/events, one a second), a context's page, and the audit. Everything it shows comes from the engine's read-only
 * JSON API on the same listener; the token rides in an HttpOnly cookie this script never sees.
 */
import cytoscape, { type Core } from "cytoscape";
import { AuditView } from "./audit-view.ts";
import { renderContextPage, trafficText } from "./context-page.ts";
import { byId, el, getJson } from "./dom.ts";
import { byteRates, type ContextStats, humanBytes, type StatsView } from "./rates.ts";
import { ReachView } from "./reach-view.ts";
import { type ContextInfo, type NetworkInfo, type PeerInfo, topology } from "./topology.ts";

/** Above this many contexts a network shows one node per level until opened. */
const COLLAPSE_ABOVE = 30;
/** Records are read again this often (and at once when the counters name a context the page lacks). */
const REFRESH_MS = 15_000;

const state = {
  node: "this host",
  contexts: [] as ContextInfo[],
  networks: [] as NetworkInfo[],
  peers: [] as PeerInfo[],
  expanded: new Set<string>(),
  drawn: "",
  previous: undefined as StatsView | undefined,
  current: undefined as StatsView | undefined,
  rows: new Map<string, HTMLTableRowElement>(),
  /** The contexts the last counters named: when the next name others, the records are read again. */
  countedNames: undefined as string | undefined,
};

const LEVEL_COLOURS: Record<string, string> = { l2: "#2f6fdf", l3: "#e08a1e", socket: "#2c9e5b" };

const cy: Core = cytoscape({
  container: byId("topology"),
  wheelSensitivity: 0.3,
  style: [
    {
      selector: "node",
      style: { label: "data(label)", "font-size": 11, "text-valign": "bottom", "text-margin-y": 3 },
    },
    {
      selector: ":parent",
      style: {
        "text-valign": "top",
        "background-opacity": 0.06,
        "border-width": 1,
        "border-color": "#9aa4b1",
        padding: "14px",
      },
    },
    {
      selector: "node.host",
      style: { "font-weight": "bold", "font-size": 14, "background-color": "#1d232b" },
    },
    { selector: "node.peer", style: { "background-color": "#6b7480", "border-style": "dashed" } },
    { selector: "node.remote", style: { "background-color": "#9aa4b1" } },
    { selector: "edge.overlay", style: { "line-style": "dashed", "line-color": "#6b7480", width: 2 } },
    { selector: "node.network", style: { "background-color": "#6b7480", shape: "round-rectangle" } },
    ...Object.entries(LEVEL_COLOURS).map(([level, colour]) => ({
      selector: `node.level-${level}`,
      style: { "background-color": colour },
    })),
    {
      selector: "node.group",
      style: { shape: "round-rectangle", width: 70, height: 30, "text-valign": "center", color: "#fff" },
    },
    { selector: "node.context", style: { width: 22, height: 22 } },
    { selector: "node:selected", style: { "border-width": 3, "border-color": "#1d232b" } },
    {
      selector: "edge",
      style: {
        width: 1,
        "line-color": "#9aa4b1",
        "curve-style": "bezier",
        label: "data(label)",
        "font-size": 9,
      },
    },
  ],
});

cy.on("tap", "node.context", (e) => {
  location.hash = `#context/${encodeURIComponent(e.target.data("name") as string)}`;
});
cy.on("tap", "node.group", (e) => {
  state.expanded.add(e.target.data("network") as string);
  draw(true);
});

function draw(force = false): void {
  const signature = JSON.stringify([
    state.contexts.map((c) => [c.name, c.level, c.status, c.networks]),
    state.networks.map((n) => n.name),
    state.peers,
    [...state.expanded],
  ]);
  if (!force && signature === state.drawn) return;
  state.drawn = signature;
  cy.elements().remove();
  cy.add(
    topology(state.contexts, state.networks, {
      node: state.node,
      peers: state.peers,
      expanded: state.expanded,
      collapseAbove: COLLAPSE_ABOVE,
    }),
  );
  cy.layout({ name: "preset", fit: true, padding: 20 }).run();
}

interface ClusterStatus {
  self?: string;
  nodes: { name: string; underlay: string; contexts: number; blocks: { network: string }[] }[];
}

/** The cluster's other nodes; none when this engine is no cluster member (the API answers 400 then). */
async function clusterPeers(): Promise<PeerInfo[]> {
  let status: ClusterStatus;
  try {
    status = await getJson<ClusterStatus>("/v1/cluster");
  } catch {
    return [];
  }
  if (status.self && status.self !== state.node) {
    state.node = status.self;
  }
  return status.nodes
    .filter((n) => n.name !== status.self)
    .map((n) => ({
      name: n.name,
      underlay: n.underlay,
      contexts: n.contexts,
      networks: [...new Set(n.blocks.map((b) => b.network))].sort(),
    }));
}

async function loadTopology(): Promise<void> {
  const [contexts, networks, peers] = await Promise.all([
    getJson<ContextInfo[]>("/ui/contexts"),
    getJson<NetworkInfo[]>("/v1/networks"),
    clusterPeers(),
  ]);
  state.contexts = contexts;
  state.networks = networks;
  state.peers = peers;
  showSummary();
  showHosts();
  draw();
  renderTable();
}

function showSummary(): void {
  byId("summary").textContent =
    `node ${state.node} · ${state.contexts.length} contexts · ${state.networks.length} networks`;
}

/** The hosts and their networks in words, under the canvas (which a screen reader or a test cannot read). */
function showHosts(): void {
  const local = el(
    "span",
    { "data-host": state.node },
    `${state.node} (this node): ${state.networks.map((n) => n.name).join(", ") || "no networks"}`,
  );
  const peers = state.peers.map((p) =>
    el(
      "span",
      { "data-host": p.name },
      `${p.name} (${p.underlay}, ${p.contexts} contexts): ${p.networks.join(", ") || "no overlay blocks"}`,
    ),
  );
  byId("hosts").replaceChildren(...[local, ...peers].flatMap((s, i) => (i === 0 ? [s] : [" · ", s])));
}

function renderTable(): void {
  const body = byId("contexts").querySelector("tbody")!;
  const rows = new Map<string, HTMLTableRowElement>();
  for (const c of state.contexts) {
    const row =
      state.rows.get(c.name) ??
      el(
        "tr",
        { "data-context": c.name },
        el("td", { class: "name" }, c.name),
        el("td", {}, el("span", { class: `badge level-${c.level}` }, c.level)),
        el("td", { class: "status" }),
        el("td", { class: "networks" }),
        el("td", { class: "addresses" }),
        ...["rx-rate", "tx-rate", "rx-bytes", "tx-bytes", "drops", "connections"].map((k) =>
          el("td", { class: `num ${k}` }, "–"),
        ),
      );
    row.querySelector(".status")!.textContent = c.status;
    row.querySelector(".networks")!.textContent = c.networks.join(", ");
    row.querySelector(".addresses")!.textContent = c.addresses.join(", ");
    row.onclick = () => {
      location.hash = `#context/${encodeURIComponent(c.name)}`;
    };
    rows.set(c.name, row);
  }
  body.replaceChildren(...rows.values());
  state.rows = rows;
  applyFilter();
  if (state.current) showCounters(state.current);
}

function applyFilter(): void {
  const words = (byId<HTMLInputElement>("filter").value ?? "").toLowerCase().split(/\s+/).filter(Boolean);
  const byName = new Map(state.contexts.map((c) => [c.name, c]));
  for (const [name, row] of state.rows) {
    const c = byName.get(name)!;
    const text = `${c.name} ${c.level} ${c.networks.join(" ")} ${c.addresses.join(" ")}`.toLowerCase();
    row.hidden = !words.every((w) => text.includes(w));
  }
}
byId("filter").addEventListener("input", applyFilter);

function showCounters(view: StatsView): void {
  const rates = byteRates(state.previous, view);
  const traffic = document.getElementById("context-traffic");
  const shown = traffic?.dataset["context"];
  if (traffic && shown !== undefined)
    traffic.textContent = trafficText(view.contexts.find((c) => c.name === shown));
  for (const c of view.contexts) {
    const row = state.rows.get(c.name);
    if (!row) continue;
    const set = (cls: string, text: string) => {
      const cell = row.querySelector(`.${cls}`)!;
      if (cell.textContent !== text) cell.textContent = text;
    };
    const rate = rates.get(c.name);
    set("rx-rate", rate ? `${humanBytes(rate.rx)}/s` : "–");
    set("tx-rate", rate ? `${humanBytes(rate.tx)}/s` : "–");
    set("rx-bytes", String(c.rx.bytes));
    set("tx-bytes", String(c.tx.bytes));
    set("drops", String(c.rx.drops + c.tx.drops));
    set("connections", String(c.connections));
  }
}

function watchCounters(): void {
  const live = byId("live");
  const events = new EventSource("/ui/events");
  events.addEventListener("stats", (e) => {
    const view = JSON.parse((e as MessageEvent<string>).data) as StatsView;
    state.previous = state.current;
    state.current = view;
    if (view.node && view.node !== state.node) {
      state.node = view.node;
      showSummary();
      draw(true);
    }
    live.className = "live on";
    live.textContent = `counters: live ${new Date().toLocaleTimeString()}`;
    showCounters(view);
    // A context made or removed shows within a second, without polling the records every second.
    const names = view.contexts.map((c) => c.name).join("\n");
    if (state.countedNames !== undefined && names !== state.countedNames)
      void loadTopology().catch(() => undefined);
    state.countedNames = names;
  });
  events.addEventListener("unavailable", (e) => {
    live.className = "live off";
    const body = JSON.parse((e as MessageEvent<string>).data) as { error?: { message?: string } };
    live.textContent = `counters unavailable: ${body.error?.message ?? "?"}`;
  });
  events.onerror = () => {
    live.className = "live off";
    live.textContent = "counters: reconnecting";
  };
}

function currentStats(name: string): ContextStats | undefined {
  return state.current?.contexts.find((c) => c.name === name);
}

async function route(): Promise<void> {
  const m = /^#context\/(.+)$/.exec(location.hash);
  if (!m) return;
  const name = decodeURIComponent(m[1]!);
  cy.$(":selected").unselect();
  cy.$id(`ctx:${name}`).select();
  try {
    await renderContextPage(byId("context-page"), name, currentStats(name));
  } catch (err) {
    byId("context-page").replaceChildren(
      el("h2", {}, "Context"),
      el("p", {}, `${name}: ${(err as Error).message}`),
    );
  }
}
window.addEventListener("hashchange", () => void route());

await loadTopology();
watchCounters();
void route();
void new AuditView().open(state.contexts.length);
void new ReachView().open();
setInterval(() => void loadTopology().catch(() => undefined), REFRESH_MS);
