/**
 * netavark (podman's network backend) as podman drives it: per container `ip netns add` + `netavark setup NETNS`
 * with the network options on stdin (podman assigns the address itself), then `netavark teardown` + `ip netns del`
 * (what ../shared/peers/bench-netavark.js measures). Its firewall driver is iptables here, as podman 4.3 ships it.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { ip } from "./cni-peer.ts";
import type { Path } from "./population.ts";

export const NETAVARK = "/usr/lib/podman/netavark";

export function netavarkAvailable(): boolean {
  return existsSync(NETAVARK);
}

function options(i: number): string {
  const id = `nvbench${i}`;
  return JSON.stringify({
    container_id: id.padEnd(64, "0"),
    container_name: id,
    port_mappings: [],
    networks: {
      benchnv: {
        static_ips: [`10.204.${Math.floor((i + 2) / 256)}.${(i + 2) % 256}`],
        interface_name: "eth0",
        aliases: [],
      },
    },
    network_info: {
      benchnv: {
        name: "benchnv",
        id: "1".padStart(64, "0"),
        driver: "bridge",
        network_interface: "nv-bench0",
        subnets: [{ subnet: "10.204.0.0/16", gateway: "10.204.0.1" }],
        ipv6_enabled: false,
        internal: false,
        dns_enabled: false,
        ipam_options: { driver: "host-local" },
      },
    },
  });
}

/** Container i lives in /run/netns/nvb${i}; configDir is netavark's own state directory. */
export function netavarkPath(configDir: string): Path {
  const run = (verb: string, i: number) => {
    const r = spawnSync(NETAVARK, ["--config", configDir, verb, `/run/netns/nvb${i}`], {
      input: options(i),
      encoding: "utf8",
    });
    if (r.status !== 0) throw new Error(`netavark ${verb} ${i}: ${r.stdout}${r.stderr}`);
  };
  return {
    label: "netavark",
    add(i) {
      ip("netns", "add", `nvb${i}`);
      run("setup", i);
    },
    remove(i) {
      run("teardown", i);
      ip("netns", "del", `nvb${i}`);
    },
  };
}
