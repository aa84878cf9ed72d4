/**
 * `GET /metrics`: the engine in the Prometheus text format (prom-client). Traffic is collected on scrape: one
 * reading of the same counters `GET /v1/stats` serves (engine/stats.ts), written out as series by trafficText, so a
 * scrape costs that reading and the text, not a label lookup per series in prom-client's own storage. The engine's
 * own timings (requests, gc, reconcile passes) are histograms
 * updated as the work happens; etcd's health, when the engine is a cluster member, is its membership's last word.
 */
import { Histogram, Registry } from "prom-client";
import type { ClusterMember } from "../cluster/member.ts";
import { type ContextShare, type StatsView, statsReading } from "../engine/stats.ts";
import { onTiming } from "../engine/timings.ts";
import type { Host } from "../host.ts";

type Labels = Record<string, string>;
interface Sample {
  labels: Labels;
  value: number;
}

/** A metric whose values are computed when the registry asks (prom-client calls get() on every scrape). */
class CollectedMetric {
  readonly aggregator = "sum";
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge",
    private readonly samples: () => Sample[],
  ) {}

  get() {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      values: this.samples(),
      aggregator: this.aggregator,
    };
  }
}

/** Route labels stay few: the kind of request, with names replaced (an unknown path is "other"). */
const KINDS = new Set([
  "apply",
  "cluster",
  "cni",
  "contexts",
  "dns",
  "health",
  "networks",
  "overlay",
  "policies",
  "resolve",
  "settle",
  "stats",
]);

export function routeOf(url: string): string {
  const path = url.split("?")[0]!;
  if (path === "/metrics") return path;
  const [v1, kind, name, verb] = path.split("/").filter(Boolean);
  if (v1 !== "v1" || kind === undefined || !KINDS.has(kind)) return "other";
  const verbPart = verb === undefined ? "" : `/${/^[a-z-]+$/.test(verb) ? verb : ":verb"}`;
  return `/v1/${kind}${name === undefined ? "" : "/:name"}${verbPart}`;
}

const DIRECTIONS = [
  ["rx", "receive"],
  ["tx", "transmit"],
] as const;
const COUNTERS = ["bytes", "packets", "drops"] as const;

export class EngineMetrics {
  readonly registry = new Registry();
  readonly contentType = Registry.PROMETHEUS_CONTENT_TYPE;
  private readonly requests: Histogram<"route" | "method">;
  /** This node's name as the last reading had it. */
  private node = "";
  private readSeconds = 0;

  constructor(
    private readonly host: Host,
    cluster?: ClusterMember,
  ) {
    const registers = [this.registry];
    this.requests = new Histogram({
      name: "netctx_engine_request_duration_seconds",
      help: "time the engine took to answer an API request, by route",
      labelNames: ["route", "method"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    const work = (name: string, help: string) =>
      new Histogram({
        name,
        help,
        labelNames: ["pass"],
        buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
        registers,
      });
    const gc = work("netctx_gc_duration_seconds", "time a gc took (start-up, the periodic check, a dry run)");
    const reconcile = work(
      "netctx_reconcile_duration_seconds",
      "time a reconcile pass took: converge (gc), repair, check (a drift check of ls, inspect, CNI CHECK)",
    );
    onTiming(host, (what, pass, seconds) => (what === "gc" ? gc : reconcile).observe({ pass }, seconds));
    this.collected(
      "netctx_stats_read_seconds",
      "time this scrape's reading of the traffic counters took",
      "gauge",
      () => [{ labels: { node: this.node }, value: this.readSeconds }],
    );
    if (cluster) {
      this.collected(
        "netctx_etcd_up",
        "1 while this node's record is in etcd (its last request there succeeded), else 0",
        "gauge",
        () => [{ labels: { node: this.node }, value: cluster.memberState().registered ? 1 : 0 }],
      );
      this.collected(
        "netctx_etcd_last_renewal_timestamp_seconds",
        "when etcd last confirmed this node's lease (unix time; 0: never)",
        "gauge",
        () => {
          const last = cluster.memberState().lastRenewal;
          return [{ labels: { node: this.node }, value: last ? Date.parse(last) / 1000 : 0 }];
        },
      );
    }
  }

  private collected(name: string, help: string, type: "counter" | "gauge", samples: () => Sample[]): void {
    this.registry.registerMetric(new CollectedMetric(name, help, type, samples) as never);
  }

  /** An answered request, for the latency histogram. */
  observeRequest(method: string, url: string, seconds: number): void {
    this.requests.observe({ route: routeOf(url), method }, seconds);
  }

  /** The exposition text: the counters read now, everything else as it stands. */
  async text(): Promise<string> {
    const started = performance.now();
    const reading = statsReading(this.host, { keepNetnsFiles: true });
    this.node = reading.node;
    this.readSeconds = (performance.now() - started) / 1000;
    return `${await this.registry.metrics()}\n${trafficText(reading)}`;
  }
}

/** A label value in the text format: backslash, double quote and newline escaped. */
function labelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function family(name: string, help: string, type: string, lines: string[]): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${lines.join("")}`;
}

/**
 * The traffic families, written here rather than through prom-client's metric objects: at 1000 contexts that is
 * ~7000 series a scrape, whose label objects prom-client would format one by one (~50 ms measured); here each
 * context's label set is formatted once.
 */
export function trafficText(reading: StatsView & { shares: ContextShare[] }): string {
  const node = labelValue(reading.node);
  const shareLabels = reading.shares.map(
    (s) =>
      `{context="${labelValue(s.context)}",network="${labelValue(s.network)}",level="${labelValue(s.level)}",node="${node}"}`,
  );
  const networkLabels = reading.networks.map(
    (n) => `{network="${labelValue(n.name)}",driver="${labelValue(n.driver)}",node="${node}"}`,
  );
  const out: string[] = [];
  for (const [dir, word] of DIRECTIONS)
    for (const counter of COUNTERS) {
      const did = word === "receive" ? "received" : "sent";
      const refused = counter === "drops" ? " and netctx refused" : "";
      const name = `netctx_context_${word}_${counter}_total`;
      out.push(
        family(
          name,
          `${counter} a context ${did} on a network${refused}`,
          "counter",
          reading.shares.map((s, i) => `${name}${shareLabels[i]} ${s[dir][counter]}\n`),
        ),
      );
      const net = `netctx_network_${word}_${counter}_total`;
      out.push(
        family(
          net,
          `${counter} the contexts of a network ${did} on it${refused}`,
          "counter",
          reading.networks.map((n, i) => `${net}${networkLabels[i]} ${n[dir][counter]}\n`),
        ),
      );
    }
  out.push(
    family(
      "netctx_context_connections",
      "open TCP connections of a context (ESTABLISHED or CLOSE_WAIT)",
      "gauge",
      reading.contexts.map(
        (c) =>
          `netctx_context_connections{context="${labelValue(c.name)}",level="${labelValue(c.level)}",node="${node}"} ${c.connections}\n`,
      ),
    ),
  );
  return out.join("\n");
}
