/**
 * Policies (issue 19): who may reach whom, as Kubernetes NetworkPolicy says it. A policy selects contexts and
 * allows traffic for them: without `egress` it selects its `to` contexts (ingress: they accept only what some policy
 * allows) and allows from `from`; with `egress` it selects its `from` contexts (they may send only what some policy
 * allows) and allows to `to`. Ports default to TCP, as in Kubernetes; a policy without ports allows every port and
 * protocol (and ICMP). engine/policy-compile.ts turns the records into model/policy-tables.ts.
 */
import { z } from "zod";
import { invalid } from "../errors.ts";
import { type Cidr, formatIp, parseCidr, parseIp } from "../net/cidr.ts";
import { shown } from "../net/ifname.ts";
import { labelKeyProblem, labelValueProblem } from "./labels.ts";
import { checkName } from "./names.ts";
import { SceneNameSchema } from "./records.ts";

/**
 * What a selector names:
 * - `NAME` or `context:NAME`: the context of that name (`context:` for contexts named like a keyword);
 * - `KEY=VALUE[,KEY=VALUE]`: the contexts whose labels hold every pair;
 * - `network:NAME`: the contexts on that network (and, for a network spanning hosts, its subnets);
 * - `host`: the host, as contexts reach it: every network's gateway addresses;
 * - `world`: every address no context, network gateway or CIDR selector of the tables holds (0.0.0.0/0, ::/0);
 * - a CIDR or an address: the addresses inside it, contexts included.
 * A name or network that does not exist (yet) matches nothing, as a Kubernetes selector that matches no pod: the
 * policy applies to a context made later.
 */
export type Selector =
  | { kind: "context"; name: string }
  | { kind: "labels"; labels: [string, string][] }
  | { kind: "network"; name: string }
  | { kind: "host" }
  | { kind: "world" }
  | { kind: "cidr"; cidr: Cidr };

const NEITHER = "is neither a context name, KEY=VALUE[,KEY=VALUE], network:NAME, host, world nor a CIDR";

export function parseSelector(field: string, text: string): Selector {
  if (typeof text !== "string" || text.length === 0) throw invalid(field, "a selector is required");
  if (text === "host" || text === "world") return { kind: text };
  if (text.startsWith("network:")) {
    const name = text.slice("network:".length);
    checkName(field, name, 32);
    return { kind: "network", name };
  }
  if (text.startsWith("context:")) {
    const name = text.slice("context:".length);
    checkName(field, name, 64);
    return { kind: "context", name };
  }
  if (text.includes("=")) return { kind: "labels", labels: parseLabelPairs(field, text) };
  if (text.includes("/")) return { kind: "cidr", cidr: hostBitsCleared(parseCidr(text, field), field) };
  if (text.includes(":") || /^\d+\.\d+\.\d+\.\d+$/.test(text)) {
    const ip = parseIp(text, field);
    const prefix = ip.family === 4 ? 32 : 128;
    return {
      kind: "cidr",
      cidr: { family: ip.family, addr: ip.addr, network: ip.addr, prefix, text: `${ip.text}/${prefix}` },
    };
  }
  if (!/^[a-z0-9][a-z0-9_-]*$/.test(text)) throw invalid(field, `${shown(text)} ${NEITHER}`);
  checkName(field, text, 64);
  return { kind: "context", name: text };
}

/** `10.1.0.5/8` is refused rather than read as 10.0.0.0/8: a selector that means something else than it says. */
function hostBitsCleared(c: Cidr, field: string): Cidr {
  if (c.addr !== c.network)
    throw invalid(
      field,
      `${c.text} has host bits set (the network is ${formatIp(c.family, c.network)}/${c.prefix})`,
    );
  return c;
}

function parseLabelPairs(field: string, text: string): [string, string][] {
  const pairs: [string, string][] = [];
  for (const part of text.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw invalid(field, `${shown(part)} in ${shown(text)} is not KEY=VALUE`);
    const key = part.slice(0, eq);
    const value = part.slice(eq + 1);
    const problem = labelKeyProblem(key) ?? labelValueProblem(key, value);
    if (problem) throw invalid(field, problem);
    if (pairs.some(([k]) => k === key)) throw invalid(field, `key ${shown(key)} is given twice`);
    pairs.push([key, value]);
  }
  return pairs;
}

/** The one way a selector is written (canonical CIDR, labels in the given order): what a record keeps. */
export function formatSelector(s: Selector): string {
  switch (s.kind) {
    case "context":
      return s.name === "host" || s.name === "world" ? `context:${s.name}` : s.name;
    case "labels":
      return s.labels.map(([k, v]) => `${k}=${v}`).join(",");
    case "network":
      return `network:${s.name}`;
    case "cidr":
      return s.cidr.text;
    default:
      return s.kind;
  }
}

export const PROTOCOLS = ["tcp", "udp"] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** A range expands to one table entry per port: bounded, so a typo like 1-65535 is refused, not 65535 entries. */
export const MAX_PORT_RANGE = 1024;

export const PortRangeSchema = z.strictObject({
  proto: z.enum(PROTOCOLS),
  port: z.number().int().min(1).max(65535),
  /** The last port of a range, inclusive; absent for one port. */
  end: z.number().int().min(1).max(65535).exactOptional(),
});
export type PortRange = z.infer<typeof PortRangeSchema>;

/** `N`, `N-M`, `N/udp`, `N-M/tcp`: TCP when no protocol is given, as Kubernetes defaults. */
export function parsePortArg(field: string, text: string | number): PortRange {
  const raw = String(text);
  const m = /^(\d{1,5})(?:-(\d{1,5}))?(?:\/([a-z]+))?$/i.exec(raw.trim());
  if (!m) throw invalid(field, `${shown(raw)} is not N, N-M, N/tcp|udp or N-M/tcp|udp`);
  const proto = (m[3]?.toLowerCase() ?? "tcp") as Protocol;
  if (!(PROTOCOLS as readonly string[]).includes(proto))
    throw invalid(field, `protocol ${shown(m[3]!)} is not tcp or udp`);
  const port = Number(m[1]);
  const end = m[2] === undefined ? undefined : Number(m[2]);
  for (const p of [port, end ?? port])
    if (p < 1 || p > 65535) throw invalid(field, `port ${p} is outside 1-65535`);
  if (end !== undefined) {
    if (end < port) throw invalid(field, `range ${port}-${end} ends before it starts`);
    if (end - port + 1 > MAX_PORT_RANGE)
      throw invalid(
        field,
        `range ${port}-${end} holds ${end - port + 1} ports; at most ${MAX_PORT_RANGE} per range`,
      );
  }
  return end === undefined || end === port ? { proto, port } : { proto, port, end };
}

export function formatPort(p: PortRange): string {
  return `${p.port}${p.end !== undefined ? `-${p.end}` : ""}/${p.proto}`;
}

/** What `policy add`, the API and an apply file's `policies:` take. */
export const PolicyInputSchema = z.strictObject({
  name: z.string(),
  to: z.string(),
  from: z.string(),
  ports: z.array(z.union([z.string(), z.number()])).optional(),
  egress: z.boolean().optional(),
});
export type PolicyInput = z.infer<typeof PolicyInputSchema>;

export const PolicyRecordSchema = z.strictObject({
  name: z.string().min(1),
  /** Selectors in their canonical text (formatSelector). */
  to: z.string(),
  from: z.string(),
  /** Empty: every port and protocol. */
  ports: z.array(PortRangeSchema),
  egress: z.boolean(),
  /** The apply scene that made it; `apply --prune` removes only its own scene's policies. */
  scene: SceneNameSchema.exactOptional(),
  createdAt: z.string().exactOptional(),
});
export type PolicyRecord = z.infer<typeof PolicyRecordSchema>;

/** Policy names: as context names, but no kernel object carries them, so up to 63 characters. */
export const POLICY_NAME_MAX = 63;

/** The record an input makes, after every check that needs no state; `at` prefixes the fields ("policies[2]."). */
export function policyRecordOf(input: PolicyInput, at = ""): PolicyRecord {
  checkName(`${at}name`, input.name, POLICY_NAME_MAX);
  const to = formatSelector(parseSelector(`${at}to`, input.to));
  const from = formatSelector(parseSelector(`${at}from`, input.from));
  const ports = (input.ports ?? []).map((p, i) => parsePortArg(`${at}ports[${i}]`, p));
  return { name: input.name, to, from, ports, egress: input.egress ?? false };
}

/**
 * The network-wide switches, kept in the network record's options (NetworkRecord.options) beside `antispoof`:
 * `isolate` (its contexts cannot reach each other, only the gateway and beyond) and `defaultDeny` (every context on
 * it is ingress-selected: it accepts only what a policy allows).
 */
export const ISOLATE_OPTION = "isolate";
export const DEFAULT_DENY_OPTION = "defaultDeny";

export function networkSwitches(options: Readonly<Record<string, unknown>>): {
  isolate: boolean;
  defaultDeny: boolean;
} {
  return { isolate: options[ISOLATE_OPTION] === true, defaultDeny: options[DEFAULT_DENY_OPTION] === true };
}
