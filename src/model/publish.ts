/**
 * Published ports and bandwidth limits as the user writes them (`[HOSTIP:]HOSTPORT:PORT[/tcp|udp]`, `10mbit`),
 * parsed into what the context spec records. Every refusal names the user's field.
 */
import { z } from "zod";
import { invalid } from "../errors.ts";
import { parseIp } from "../net/cidr.ts";

export type PublishProtocol = "tcp" | "udp";

/** A published port as the context spec records it. */
export const PublishedSchema = z.strictObject({
  /** Only connections to this host address are forwarded; absent = every host address (and loopback). */
  hostIp: z.string().exactOptional(),
  hostPort: z.number().int(),
  /** The context's port. */
  port: z.number().int(),
  protocol: z.enum(["tcp", "udp"]),
});
export type Published = z.infer<typeof PublishedSchema>;

/** Rates and bursts in bits (per second), the CNI bandwidth plugin's units. */
export const BandwidthSchema = z.strictObject({
  /** Towards the context. */
  ingressRate: z.number().exactOptional(),
  ingressBurst: z.number().exactOptional(),
  /** From the context. */
  egressRate: z.number().exactOptional(),
  egressBurst: z.number().exactOptional(),
});
export type Bandwidth = z.infer<typeof BandwidthSchema>;

function port(text: string, field: string, what: string): number {
  if (!/^[1-9][0-9]{0,4}$/.test(text) || Number(text) > 65535)
    throw invalid(field, `${what} "${text}" is not a port (1-65535)`);
  return Number(text);
}

/** `8080:80`, `8080:80/udp`, `192.0.2.1:8080:80`, `[2001:db8::1]:8080:80/tcp`. */
export function parsePublish(text: string, field = "publish"): Published {
  const shown = JSON.stringify(text.slice(0, 80));
  const slash = text.lastIndexOf("/");
  const body = slash < 0 ? text : text.slice(0, slash);
  const proto = slash < 0 ? "tcp" : text.slice(slash + 1).toLowerCase();
  if (proto !== "tcp" && proto !== "udp")
    throw invalid(field, `${shown}: protocol must be tcp or udp, not "${proto}"`);
  let hostIp: string | undefined;
  let rest = body;
  const bracket = body.match(/^\[([^\]]+)\]:(.*)$/);
  if (bracket) {
    hostIp = bracket[1]!;
    rest = bracket[2]!;
  } else {
    const parts = body.split(":");
    if (parts.length === 3) {
      hostIp = parts[0]!;
      rest = `${parts[1]}:${parts[2]}`;
    } else if (parts.length !== 2) {
      throw invalid(
        field,
        `${shown} is not [HOSTIP:]HOSTPORT:PORT[/tcp|udp] (an IPv6 host address goes in [])`,
      );
    }
  }
  const [h, p, extra] = rest.split(":");
  if (h === undefined || p === undefined || extra !== undefined)
    throw invalid(field, `${shown} is not [HOSTIP:]HOSTPORT:PORT[/tcp|udp]`);
  const out: Published = {
    hostPort: port(h, field, "host port"),
    port: port(p, field, "port"),
    protocol: proto,
  };
  if (hostIp !== undefined && hostIp !== "") {
    const ip = parseIp(hostIp, field);
    // The wildcard means "every host address", which is what leaving it out says.
    if (ip.addr !== 0n) out.hostIp = ip.text;
  }
  return out;
}

export function formatPublish(p: Published): string {
  const host = p.hostIp === undefined ? "" : p.hostIp.includes(":") ? `[${p.hostIp}]:` : `${p.hostIp}:`;
  return `${host}${p.hostPort}:${p.port}/${p.protocol}`;
}

/** Two publications collide when protocol and host port match and their host addresses can meet. */
export function publishCollides(a: Published, b: Published): boolean {
  if (a.protocol !== b.protocol || a.hostPort !== b.hostPort) return false;
  return a.hostIp === undefined || b.hostIp === undefined || a.hostIp === b.hostIp;
}
