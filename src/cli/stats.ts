/**
 * netctx stats [NAME...] [--json] [--watch]: traffic counters per context and per network (engine/stats.ts), through
 * the engine when it runs (GET /v1/stats), read directly otherwise. --watch prints them again every second, with
 * the rates since the last print.
 */
import type { Command } from "commander";
import { callEngine } from "../api/client.ts";
import type { Counters, StatsView } from "../engine/stats.ts";
import { cliConfig } from "./config.ts";
import { printJson, printTable } from "./output.ts";

interface StatsOptions {
  json?: boolean;
  watch?: boolean;
}

const WATCH_MS = 1000;

export function registerStats(program: Command): void {
  program
    .command("stats")
    .description(
      "traffic counters per context and network: bytes, packets and drops received (rx) and sent (tx), open TCP connections",
    )
    .argument("[name...]", "only these contexts (and their networks)")
    .option("--json", "JSON output (with --watch: one view a line)")
    .option("--watch", "print again every second, with rates (bytes/s) since the last print")
    .action(async (names: string[], o: StatsOptions) => {
      let last = await readStats(names);
      print(last, undefined, o);
      if (!o.watch) return;
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, WATCH_MS));
        const now = await readStats(names);
        print(now, last, o);
        last = now;
      }
    });
}

/** The view from the engine, or read here when no engine runs (the engine's modules load only then). */
async function readStats(names: string[]): Promise<StatsView> {
  const query = names.map((n) => `name=${encodeURIComponent(n)}`).join("&");
  const config = cliConfig();
  const fromEngine = await callEngine<StatsView>(
    config.socketPath,
    "GET",
    `/v1/stats${query ? `?${query}` : ""}`,
  );
  if (fromEngine) return fromEngine;
  const [{ statsView }, { withHost }] = await Promise.all([
    import("../engine/stats.ts"),
    import("./host.ts"),
  ]);
  return withHost((host) => statsView(host, { names }));
}

function print(now: StatsView, before: StatsView | undefined, o: StatsOptions): void {
  if (o.json) {
    // --watch --json: one line a view, for a reader that takes them as they come.
    if (o.watch) process.stdout.write(`${JSON.stringify(now)}\n`);
    else printJson(now);
    return;
  }
  if (o.watch && process.stdout.isTTY) process.stdout.write("\x1b[H\x1b[2J");
  const seconds = before ? (now.at - before.at) / 1000 : 0;
  const rate = (n: number, b: number | undefined) =>
    b === undefined || seconds <= 0 ? "-" : `${human(Math.max(0, n - b) / seconds)}/s`;
  const rates = o.watch === true;
  const prior = new Map(before?.contexts.map((c) => [c.name, c]));
  printTable(
    ["CONTEXT", "LEVEL", "NETWORKS", ...(rates ? ["RX/S", "TX/S"] : []), ...counterHeader(), "CONNS"],
    now.contexts.map((c) => {
      const p = prior.get(c.name);
      return [
        c.name,
        c.level,
        c.networks.join(","),
        ...(rates ? [rate(c.rx.bytes, p?.rx.bytes), rate(c.tx.bytes, p?.tx.bytes)] : []),
        ...counterCells(c.rx, c.tx),
        String(c.connections),
      ];
    }),
  );
  if (now.networks.length === 0) return;
  process.stdout.write("\n");
  const priorNet = new Map(before?.networks.map((n) => [n.name, n]));
  printTable(
    ["NETWORK", "DRIVER", ...(rates ? ["RX/S", "TX/S"] : []), ...counterHeader()],
    now.networks.map((n) => {
      const p = priorNet.get(n.name);
      return [
        n.name,
        n.driver,
        ...(rates ? [rate(n.rx.bytes, p?.rx.bytes), rate(n.tx.bytes, p?.tx.bytes)] : []),
        ...counterCells(n.rx, n.tx),
      ];
    }),
  );
}

function counterHeader(): string[] {
  return ["RX", "RX-PKTS", "RX-DROP", "TX", "TX-PKTS", "TX-DROP"];
}

function counterCells(rx: Counters, tx: Counters): string[] {
  return [
    human(rx.bytes),
    String(rx.packets),
    String(rx.drops),
    human(tx.bytes),
    String(tx.packets),
    String(tx.drops),
  ];
}

/** Bytes as people read them: 999 B, 1.5 kB, 12.0 MB (powers of 1000, as iperf3 and ip -h do). */
export function human(bytes: number): string {
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${Math.round(v)} B` : `${v.toFixed(1)} ${units[i]}`;
}
