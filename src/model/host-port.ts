/**
 * `--allow-host-port PORT[/tcp|udp]`: one port of the host's loopback that a shared-stack context may reach on
 * purpose (its own loopback is jailed to its address otherwise: kernel/bpf/jail-loopback.ts). Default protocol tcp,
 * as for --publish.
 */
import { z } from "zod";
import { invalid } from "../errors.ts";

export const HostPortSchema = z.strictObject({
  port: z.number().int().min(1).max(65535),
  protocol: z.enum(["tcp", "udp"]),
});
export type HostPort = z.infer<typeof HostPortSchema>;

export function parseHostPort(text: string, field = "allowHostPorts"): HostPort {
  const shown = JSON.stringify(text.slice(0, 40));
  const m = text.match(/^([1-9][0-9]{0,4})(?:\/([a-zA-Z]+))?$/);
  if (!m || Number(m[1]) > 65535) throw invalid(field, `${shown} is not PORT[/tcp|udp] (port 1-65535)`);
  const protocol = (m[2] ?? "tcp").toLowerCase();
  if (protocol !== "tcp" && protocol !== "udp")
    throw invalid(field, `${shown}: protocol must be tcp or udp, not "${protocol}"`);
  return { port: Number(m[1]), protocol };
}

export function formatHostPort(p: HostPort): string {
  return `${p.port}/${p.protocol}`;
}

/** Parsed, each port once (a repeat is harmless, so it is dropped rather than refused). */
export function parseHostPorts(texts: readonly string[], field = "allowHostPorts"): HostPort[] {
  const seen = new Map<string, HostPort>();
  for (const t of texts) {
    const p = parseHostPort(t, field);
    seen.set(formatHostPort(p), p);
  }
  return [...seen.values()];
}
