/**
 * create, ls, inspect and rm as data (command-spec.ts): the full CLI (context.ts) and the fast client
 * (fast-path.ts) both take their options from here.
 */
import type { CommandSpec } from "./command-spec.ts";

export const CREATE: CommandSpec = {
  name: "create",
  description: "create a network context",
  args: ["<name>"],
  options: [
    { flags: "--level <level>", description: "l2 | l3 | socket", required: true },
    { flags: "--network <name>", description: "network to join (repeatable)", repeat: true },
    { flags: "--ip <addr>", description: "requested address (repeatable)", repeat: true },
    { flags: "--mac <mac>", description: "static MAC of the first interface (l2)" },
    {
      flags: "--ifname <name>",
      description: "interface name inside the context, per network (l2; default eth0, eth1, ...)",
      repeat: true,
    },
    {
      flags: "--route <route>",
      description: "extra route in `ip route` form (l3; repeatable)",
      repeat: true,
    },
    {
      flags: "--publish <spec>",
      description: "publish a port: [HOSTIP:]HOSTPORT:PORT[/tcp|udp] (repeatable; IPv6 host address in [])",
      repeat: true,
    },
    {
      flags: "--bandwidth <rate>",
      description: "l2 rate limit: RATE (both ways) or IN/OUT, tc units (10mbit, 500kbit; - = none)",
    },
    {
      flags: "--label <key=value>",
      description:
        "a label policy selectors match (repeatable; Kubernetes label syntax; netctx.*, cni.*, k8s.* are netctx's own)",
      repeat: true,
    },
    {
      flags: "--allow-host-port <port>",
      description:
        "l3/socket: let the context reach this host loopback port, PORT[/tcp|udp] (repeatable; the rest of 127.0.0.1/::1 is its own address)",
      repeat: true,
    },
    {
      flags: "--alias <name>",
      description: "another DNS name the context answers to (repeatable)",
      repeat: true,
    },
    { flags: "--json", description: "print the context as JSON" },
  ],
};

export const LS: CommandSpec = {
  name: "ls",
  description: "list contexts",
  args: [],
  options: [{ flags: "--json", description: "JSON output" }],
};

export const INSPECT: CommandSpec = {
  name: "inspect",
  description: "show a context as JSON",
  args: ["<name>"],
  options: [{ flags: "--json", description: "JSON output (the default)" }],
};

export const RM: CommandSpec = {
  name: "rm",
  description: "remove contexts; a missing or refused one is reported, the others go",
  args: ["<name...>"],
  options: [
    { flags: "--force", description: "kill the processes still running in the context instead of refusing" },
    { flags: "-i, --ignore", description: "a missing context is a note, not an error" },
    { flags: "--json", description: 'print {"removed": [NAME...]} once all are done' },
  ],
};

/** What `create`'s options give, as commander and the fast parser hand them over. */
export interface CreateOptions {
  level: string;
  network: string[];
  ip: string[];
  mac?: string;
  ifname: string[];
  route: string[];
  publish: string[];
  bandwidth?: string;
  label: string[];
  allowHostPort: string[];
  alias: string[];
  json?: boolean;
}
