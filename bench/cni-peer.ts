/**
 * The CNI reference plugins as a runtime drives them: per container `ip netns add` + ADD, then DEL + `ip netns del`,
 * with the config on stdin and the CNI_* environment (what ../shared/peers/bench-cni.js measures).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LifecycleResult } from "./l2-lifecycle.ts";
import { stats, time } from "./stats.ts";

export const CNI_DIR = "/usr/lib/cni";

export function cniAvailable(plugin: string): boolean {
  return existsSync(join(CNI_DIR, plugin));
}

function execPlugin(
  dir: string,
  plugin: string,
  command: string,
  id: string,
  netns: string,
  conf: object,
): string {
  const r = spawnSync(join(dir, plugin), [], {
    input: JSON.stringify(conf),
    encoding: "utf8",
    env: {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: netns,
      CNI_IFNAME: "eth0",
      CNI_PATH: CNI_DIR,
    },
  });
  if (r.status !== 0) throw new Error(`${plugin} ${command}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

function ip(...args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
}

export function bridgeConf(ipMasq: boolean, dataDir: string, subnet = "10.201.0.0/16") {
  return {
    cniVersion: "1.0.0",
    name: ipMasq ? "peerbr" : "peerbrnm",
    type: "bridge",
    bridge: ipMasq ? "cni-peer0" : "cni-peer1",
    isGateway: true,
    ipMasq,
    ipam: { type: "host-local", ranges: [[{ subnet }]], routes: [{ dst: "0.0.0.0/0" }], dataDir },
  };
}

export function cniLifecycle(
  label: string,
  n: number,
  makeConf: (dataDir: string) => object & { type: string },
  pluginDir = CNI_DIR,
): LifecycleResult {
  const dataDir = mkdtempSync(join(tmpdir(), "netctx-bench-ipam-"));
  try {
    const conf = makeConf(dataDir);
    const ids = Array.from({ length: n }, (_, i) => `peer${label.replace(/\W/g, "")}${i}`);
    const results: string[] = [];
    const setup = ids.map((id) =>
      time(() => {
        ip("netns", "add", id);
        results.push(execPlugin(pluginDir, conf.type, "ADD", id, `/run/netns/${id}`, conf));
      }),
    );
    const teardown = ids.map((id, i) =>
      time(() => {
        execPlugin(pluginDir, conf.type, "DEL", id, `/run/netns/${id}`, {
          ...conf,
          prevResult: JSON.parse(results[i]!),
        });
        ip("netns", "del", id);
      }),
    );
    const both = setup.map((s, i) => s + teardown[i]!);
    return { label, n, setup: stats(setup), teardown: stats(teardown), both: stats(both) };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}
