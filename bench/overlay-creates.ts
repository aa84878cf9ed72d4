/**
 * The create-latency loop of bench/overlay.ts, run inside a test host (the engine answers callers in its own network
 * namespace only):
 *   node --import tsx bench/overlay-creates.ts SOCKET N OVERLAY-NETWORK BRIDGE-NETWORK
 * N l2 contexts on each network through the engine's API (POST /v1/contexts, what `netctx create` sends), alternating
 * which network goes first; each is removed, and the engine settled, before the next. Prints {"overlay": [ms...],
 * "bridge": [ms...]}.
 */
import { callEngine } from "../src/api/client.ts";
import { nowMs } from "./stats.ts";

const [socket, count, overlayNet, bridgeNet] = process.argv.slice(2);
if (!socket || !count || !overlayNet || !bridgeNet) {
  console.error("usage: overlay-creates.ts SOCKET N OVERLAY-NETWORK BRIDGE-NETWORK");
  process.exit(2);
}

async function call(method: string, path: string, body?: unknown): Promise<void> {
  if ((await callEngine(socket!, method, path, body)) === undefined)
    throw new Error(`no engine on ${socket}`);
}

const times: Record<"overlay" | "bridge", number[]> = { overlay: [], bridge: [] };
for (let i = 0; i < Number(count); i++) {
  const order = i % 2 === 0 ? (["overlay", "bridge"] as const) : (["bridge", "overlay"] as const);
  for (const kind of order) {
    const name = `cr-${kind[0]}${i}`;
    const network = kind === "overlay" ? overlayNet : bridgeNet;
    const t0 = nowMs();
    await call("POST", "/v1/contexts", { name, level: "l2", networks: [network] });
    times[kind].push(nowMs() - t0);
    await call("DELETE", `/v1/contexts/${name}`);
    // The engine defers some cleanup to a pause: done now, so no create pays for the previous remove.
    await call("POST", "/v1/settle");
  }
}
console.log(JSON.stringify(times));
