/**
 * One peer's walk, run by bench/peers.ts in a throwaway namespace of its own: the peer fills the population
 * itself (its iptables rules are what grows), and the namespace is dropped at the end instead of tearing the
 * population down, so every peer starts from an empty firewall.
 *   node --import tsx bench/peer-cell.ts '{"peer":"bridge-masq","ns":[100,500],"k":50,"workDir":"/tmp/..."}'
 * Logs go to stderr; stdout carries `row {Measured}` lines as rows are measured, then `done {PeerCellOutput}`.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { insideSandbox } from "../src/sandbox.ts";
import { bridgeConf, cniPath, ptpConf } from "./cni-peer.ts";
import { type KernelMemory, kernelMemory } from "./memory.ts";
import { netavarkPath } from "./netavark.ts";
import { PEERS, type PeerCellOutput, type PeerCellSpec, type PeerId } from "./peers.ts";
import type { Path } from "./population.ts";
import { walk } from "./population.ts";

function peerPath(id: PeerId, workDir: string): Path {
  const dir = join(workDir, id);
  mkdirSync(dir, { recursive: true });
  switch (id) {
    case "bridge-masq":
      return cniPath(PEERS[id].label, "brm", bridgeConf(true, dir));
    case "bridge-nomasq":
      return cniPath(PEERS[id].label, "brn", bridgeConf(false, dir));
    case "ptp-masq":
      return cniPath(PEERS[id].label, "ptp", ptpConf(dir));
    case "netavark":
      return netavarkPath(dir);
  }
}

function iptablesRules(): number | undefined {
  const r = spawnSync("sh", ["-c", "iptables-save 2>/dev/null | grep -c '^-A'"], { encoding: "utf8" });
  const n = Number(r.stdout.trim());
  return Number.isFinite(n) ? n : undefined;
}

if (!insideSandbox(process.env)) {
  console.error("peer-cell.ts runs only inside a throwaway namespace (bench/peers.ts starts it)");
  process.exit(2);
}
const spec = JSON.parse(process.argv[2] ?? "{}") as PeerCellSpec;
const path = peerPath(spec.peer, spec.workDir);
const maxN = Math.max(...spec.ns);
const before = kernelMemory();
let atN: KernelMemory | undefined;
let rulesAtN: number | undefined;
const result = walk(
  path,
  spec.ns.map((n) => ({ n, paths: [{ path, k: spec.k }] })),
  {
    keepPopulation: true,
    log: (line) => console.error(line),
    onRow: (row) => process.stdout.write(`row ${JSON.stringify(row)}\n`),
    atFull(n) {
      if (n !== maxN) return;
      atN = kernelMemory();
      rulesAtN = iptablesRules();
    },
  },
);
const out: PeerCellOutput = {
  walk: result,
  kernel: { n: maxN, before, ...(atN ? { atN } : {}) },
  ...(rulesAtN !== undefined ? { iptablesRulesAtN: rulesAtN } : {}),
};
process.stdout.write(`done ${JSON.stringify(out)}\n`);
