/** A context's page: addresses, interfaces, published ports, bandwidth and the policies that name it. */
import { el, getJson } from "./dom.ts";
import { type ContextStats, humanBytes } from "./rates.ts";

interface InterfaceView {
  name: string;
  network: string;
  hostIfname?: string;
  addresses: string[];
  gateways: string[];
  mac?: string;
  mtu: number;
}

interface ContextView {
  name: string;
  level: string;
  status: string;
  networks: string[];
  addresses: string[];
  netns?: string;
  cgroup?: string;
  table?: number;
  interfaces: InterfaceView[];
  labels?: Record<string, string>;
  publish?: string[];
  allowHostPorts?: string[];
  bandwidth?: Record<string, unknown>;
  createdAt?: string;
  node?: string;
  missing?: string[];
}

export interface PolicyView {
  name: string;
  to: string;
  from: string;
  ports: string[];
  egress?: unknown;
}

function ipv4Number(text: string): number | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  return m ? m.slice(1).reduce((n, o) => n * 256 + Number(o), 0) : undefined;
}

function inCidr(address: string, cidr: string): boolean {
  const [base, bits] = cidr.split("/");
  const a = ipv4Number(address.split("/")[0]!);
  const b = ipv4Number(base ?? "");
  if (a === undefined || b === undefined) return false;
  const size = 2 ** (32 - Number(bits));
  return Math.floor(a / size) === Math.floor(b / size);
}

/** Whether a policy selector (model/policy.ts's forms) names this context. */
export function selects(selector: string, c: ContextView): boolean {
  if (selector === c.name || selector === `context:${c.name}`) return true;
  if (selector.startsWith("network:")) return c.networks.includes(selector.slice("network:".length));
  if (selector.includes("="))
    return selector.split(",").every((pair) => {
      const [k, v] = pair.split("=");
      return c.labels?.[k ?? ""] === v;
    });
  if (selector.includes("/")) return c.addresses.some((a) => inCidr(a, selector));
  return false;
}

/** The context's counters in a line; main.ts rewrites it with every update while the page shows the context. */
export function trafficText(stats: ContextStats | undefined): string {
  if (!stats) return "no counters yet";
  return (
    `rx ${humanBytes(stats.rx.bytes)} (${stats.rx.packets} pkts, ${stats.rx.drops} drops), ` +
    `tx ${humanBytes(stats.tx.bytes)} (${stats.tx.packets} pkts, ${stats.tx.drops} drops), ` +
    `${stats.connections} connections`
  );
}

export async function renderContextPage(
  target: HTMLElement,
  name: string,
  stats: ContextStats | undefined,
): Promise<void> {
  const [c, policies] = await Promise.all([
    getJson<ContextView>(`/ui/contexts/${encodeURIComponent(name)}`),
    getJson<PolicyView[]>("/v1/policies"),
  ]);
  const mine = policies.filter((p) => selects(p.to, c) || selects(p.from, c));
  const field = (label: string, value: string | undefined) =>
    value === undefined || value === "" ? [] : [el("dt", {}, label), el("dd", {}, value)];
  target.replaceChildren(
    el("h2", {}, "Context ", el("span", { class: `badge level-${c.level}` }, c.level), " ", c.name),
    el(
      "dl",
      { id: "context-facts" },
      ...field("status", c.status + (c.missing?.length ? ` (lacks ${c.missing.join(", ")})` : "")),
      ...field("node", c.node),
      ...field("networks", c.networks.join(", ")),
      ...field("addresses", c.addresses.join(", ")),
      ...field("netns", c.netns),
      ...field("cgroup", c.cgroup),
      ...field("table", c.table === undefined ? undefined : String(c.table)),
      ...field(
        "labels",
        Object.entries(c.labels ?? {})
          .map(([k, v]) => `${k}=${v}`)
          .join(", "),
      ),
      ...field("published", (c.publish ?? []).join(", ") || "none"),
      ...field("host ports", (c.allowHostPorts ?? []).join(", ")),
      ...field("bandwidth", c.bandwidth ? JSON.stringify(c.bandwidth) : "unlimited"),
      el("dt", {}, "traffic"),
      el("dd", { id: "context-traffic", "data-context": c.name }, trafficText(stats)),
      ...field("created", c.createdAt),
    ),
    el("h3", {}, "Interfaces"),
    el(
      "table",
      { id: "context-interfaces" },
      el(
        "tr",
        {},
        ...["name", "network", "host side", "addresses", "gateways", "mac", "mtu"].map((h) =>
          el("th", {}, h),
        ),
      ),
      ...c.interfaces.map((i) =>
        el(
          "tr",
          {},
          el("td", {}, i.name),
          el("td", {}, i.network),
          el("td", {}, i.hostIfname ?? ""),
          el("td", {}, i.addresses.join(", ")),
          el("td", {}, i.gateways.join(", ")),
          el("td", {}, i.mac ?? ""),
          el("td", {}, i.mtu),
        ),
      ),
    ),
    el("h3", {}, "Policy"),
    mine.length === 0
      ? el("p", { class: "hint" }, "no policy names this context")
      : el(
          "table",
          { id: "context-policies" },
          el("tr", {}, ...["policy", "from", "to", "ports"].map((h) => el("th", {}, h))),
          ...mine.map((p) =>
            el(
              "tr",
              {},
              el("td", {}, p.name),
              el("td", {}, p.from),
              el("td", {}, p.to),
              el("td", {}, p.ports.join(", ") || "all"),
            ),
          ),
        ),
  );
}
