/**
 * CNI plugins as a runtime drives them: per container `ip netns add` + ADD, then DEL (with the ADD result as
 * prevResult) + `ip netns del`, the config on stdin and the CNI_* environment (what ../shared/peers/bench-cni.js
 * measures). Used for the reference plugins and for netctx's own CNI plugin alike.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Path } from "./population.ts";

export const CNI_DIR = "/usr/lib/cni";

export function cniAvailable(plugin: string, dir = CNI_DIR): boolean {
  return existsSync(join(dir, plugin));
}

export interface CniConf {
  cniVersion: string;
  name: string;
  type: string;
  [key: string]: unknown;
}

function execPlugin(
  dir: string,
  command: string,
  id: string,
  conf: object & { type: string },
  extraEnv: Record<string, string>,
): string {
  const r = spawnSync(join(dir, conf.type), [], {
    input: JSON.stringify(conf),
    encoding: "utf8",
    env: {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: `/run/netns/${id}`,
      CNI_IFNAME: "eth0",
      CNI_PATH: CNI_DIR,
      ...extraEnv,
    },
  });
  if (r.status !== 0) throw new Error(`${conf.type} ${command} ${id}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

export function ip(...args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
}

/** Container number i is `${prefix}${i}`, its netns /run/netns/${prefix}${i}. */
export function cniPath(
  label: string,
  prefix: string,
  conf: CniConf,
  pluginDir = CNI_DIR,
  extraEnv: Record<string, string> = {},
): Path {
  const results = new Map<number, string>();
  return {
    label,
    add(i) {
      const id = `${prefix}${i}`;
      ip("netns", "add", id);
      results.set(i, execPlugin(pluginDir, "ADD", id, conf, extraEnv));
    },
    remove(i) {
      const id = `${prefix}${i}`;
      const prev = results.get(i);
      execPlugin(
        pluginDir,
        "DEL",
        id,
        prev === undefined ? conf : { ...conf, prevResult: JSON.parse(prev) as unknown },
        extraEnv,
      );
      results.delete(i);
      ip("netns", "del", id);
    },
  };
}

/** The reference bridge plugin with host-local IPAM, as podman's CNI backend configures it. */
export function bridgeConf(ipMasq: boolean, dataDir: string): CniConf {
  return {
    cniVersion: "1.0.0",
    name: ipMasq ? "peerbr" : "peerbrnm",
    type: "bridge",
    bridge: ipMasq ? "cni-peer0" : "cni-peer1",
    isGateway: true,
    ipMasq,
    ipam: {
      type: "host-local",
      ranges: [[{ subnet: ipMasq ? "10.201.0.0/16" : "10.202.0.0/16" }]],
      routes: [{ dst: "0.0.0.0/0" }],
      dataDir,
    },
  };
}

/** The reference ptp plugin (a veth per container, host routes, no bridge), as ../shared/peers/conf/ptp.json. */
export function ptpConf(dataDir: string): CniConf {
  return {
    cniVersion: "1.0.0",
    name: "peerptp",
    type: "ptp",
    ipMasq: true,
    mtu: 1500,
    ipam: {
      type: "host-local",
      ranges: [[{ subnet: "10.203.0.0/16" }]],
      routes: [{ dst: "0.0.0.0/0" }],
      dataDir,
    },
  };
}
