/**
 * `GET /metrics`: the engine in the Prometheus text format (prom-client). Traffic is collected on scrape: one
 * reading of the same counters `GET /v1/stats` serves (engine/stats.ts), turned into series by custom metrics that
 * hand prom-client the values as they are, so a scrape costs that reading and the text, not a label lookup per
 * series in prom-client's own storage. The engine's own timings (requests, gc, reconcile passes) are histograms
 * updated as the work happens; etcd's health, when the engine is a cluster member, is its membership's last word.
 */
import { Histogram, Registry } from "prom-client";
import type { ClusterMember } from "../cluster/member.ts";
import { type ContextShare, type Counters, type StatsView, statsReading } from "../engine/stats.ts";
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
  /** The reading the traffic series of the scrape under way come from. */
  private reading: (StatsView & { shares: ContextShare[] }) | undefined;
  private readSeconds = 0;

  constructor(
    private readonly host: Host,
    private readonly cluster?: ClusterMember,
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
    for (const [dir, word] of DIRECTIONS)
      for (const counter of COUNTERS) {
        this.collected(
          `netctx_context_${word}_${counter}_total`,
          `${counter} a context ${word === "receive" ? "received" : "sent"} on a network${counter === "drops" ? " and netctx refused" : ""}`,
          "counter",
          () => this.contextSamples(dir, counter),
        );
        this.collected(
          `netctx_network_${word}_${counter}_total`,
          `${counter} the contexts of a network ${word === "receive" ? "received" : "sent"} on it${counter === "drops" ? " and netctx refused" : ""}`,
          "counter",
          () => this.networkSamples(dir, counter),
        );
      }
    this.collected("netctx_context_connections", "open TCP connections of a context", "gauge", () =>
      (this.reading?.contexts ?? []).map((c) => ({
        labels: { context: c.name, level: c.level, node: this.node },
        value: c.connections,
      })),
    );
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

  private get node(): string {
    return this.reading?.node ?? this.cluster?.name ?? "";
  }

  private collected(name: string, help: string, type: "counter" | "gauge", samples: () => Sample[]): void {
    this.registry.registerMetric(new CollectedMetric(name, help, type, samples) as never);
  }

  private contextSamples(dir: "rx" | "tx", counter: keyof Counters): Sample[] {
    return (this.reading?.shares ?? []).map((s) => ({
      labels: { context: s.context, network: s.network, level: s.level, node: this.node },
      value: s[dir][counter],
    }));
  }

  private networkSamples(dir: "rx" | "tx", counter: keyof Counters): Sample[] {
    return (this.reading?.networks ?? []).map((n) => ({
      labels: { network: n.name, driver: n.driver, node: this.node },
      value: n[dir][counter],
    }));
  }

  /** An answered request, for the latency histogram. */
  observeRequest(method: string, url: string, seconds: number): void {
    this.requests.observe({ route: routeOf(url), method }, seconds);
  }

  /** The exposition text: the counters read now, everything else as it stands. */
  async text(): Promise<string> {
    const started = performance.now();
    this.reading = statsReading(this.host);
    this.readSeconds = (performance.now() - started) / 1000;
    try {
      return await this.registry.metrics();
    } finally {
      this.reading = undefined;
    }
  }
}
