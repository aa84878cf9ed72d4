/**
 * Input schemas: one per thing a user can ask for, shared by the CLI, apply files, the API and CNI.
 * Shape checks live here; checks that need state (overlaps, taken addresses) live in the engine.
 */
import { z } from "zod";
import { invalid } from "../errors.ts";

export const LEVELS = ["l2", "l3", "socket"] as const;

export const NetworkInputSchema = z.strictObject({
  name: z.string(),
  driver: z.string(),
  subnets: z.array(z.string()).min(1, "at least one subnet is required"),
  gateways: z.array(z.string()).optional(),
  nat: z.boolean().optional(),
  internal: z.boolean().optional(),
  mtu: z.number().int().min(68).max(65535).optional(),
  antispoof: z.boolean().optional(),
  /** Policy (issue 19): its contexts cannot reach each other, only the gateway and beyond. */
  isolate: z.boolean().optional(),
  /** Policy: every context on it accepts only what a policy allows. */
  defaultDeny: z.boolean().optional(),
  /** false: no DNS server on the network's gateways, and its contexts' names are not served (`--no-dns`). */
  dns: z.boolean().optional(),
  /** Driver-specific options (macvlan parent, vxlan vni, ...). */
  options: z.record(z.string(), z.unknown()).optional(),
});
export type NetworkInput = z.infer<typeof NetworkInputSchema>;

export const RouteInputSchema = z.string();

/** A DNS name: dot-separated labels of letters, digits and inner hyphens, 1-63 each, 253 in all (RFC 1123). */
export const DnsNameSchema = z
  .string()
  .max(253, "is longer than 253 characters")
  .regex(
    /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/,
    "is not a DNS name (letters, digits and inner hyphens, labels of 1-63 separated by dots)",
  );

export const ContextInputSchema = z.strictObject({
  name: z.string(),
  level: z.enum(LEVELS, {
    error: (iss) => `unknown level "${String(iss.input)}" (known: ${LEVELS.join(", ")})`,
  }),
  networks: z.array(z.string()).min(1, "at least one network is required"),
  ips: z.array(z.string()).optional(),
  mac: z.string().optional(),
  /** Interface names inside an l2 context, one per network; default eth0, eth1, ... */
  ifnames: z.array(z.string()).optional(),
  /** Extra routes for an l3 context, in `ip route` form: "default via 10.1.0.1", "10.9.0.0/16 via 10.1.0.254". */
  routes: z.array(RouteInputSchema).optional(),
  /** l2: join a network namespace somebody else made (a container runtime's); teardown never deletes it. */
  netns: z.string().startsWith("/", "must be an absolute path").optional(),
  /** Free-form owner marks kept in the record (CNI keeps its container id and ifname here for GC). */
  labels: z.record(z.string(), z.string()).optional(),
  /** More DNS names for the context (`--alias`), served on each of its networks beside its own name. */
  aliases: z.array(DnsNameSchema).optional(),
  /** Published ports, `[HOSTIP:]HOSTPORT:PORT[/tcp|udp]` (parsed by model/publish.ts, field "publish"). */
  publish: z.array(z.string()).optional(),
  /** l3 and socket: host loopback ports it may reach, `PORT[/tcp|udp]` (model/host-port.ts, field "allowHostPorts"). */
  allowHostPorts: z.array(z.string()).optional(),
  /** l2: rate limits in bits per second (bursts in bits), the CNI bandwidth capability's keys. */
  bandwidth: z
    .strictObject({
      ingressRate: z.number().int().min(8000).optional(),
      ingressBurst: z.number().int().positive().optional(),
      egressRate: z.number().int().min(8000).optional(),
      egressBurst: z.number().int().positive().optional(),
    })
    .optional(),
});
export type ContextInput = z.infer<typeof ContextInputSchema>;

/** `network connect`: one more network for a made context, with requested addresses on it. */
export const ConnectInputSchema = z.strictObject({
  context: z.string(),
  network: z.string(),
  ips: z.array(z.string()).optional(),
});
export type ConnectInput = z.infer<typeof ConnectInputSchema>;

/** `network disconnect`: take a context off one of its networks. */
export const DisconnectInputSchema = z.strictObject({
  context: z.string(),
  network: z.string(),
});
export type DisconnectInput = z.infer<typeof DisconnectInputSchema>;

/** Parse with a schema; the first problem becomes one NetctxError naming the field path. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, root = ""): z.infer<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const { field, message } = firstProblem(result.error, root);
  throw invalid(field || "input", plainWords(result.error.issues[0]!, message));
}

/** The first problem of a failed parse: the field path ("" for the root) and a one-line message. */
export function firstProblem(error: z.ZodError, root = ""): { field: string; message: string } {
  const issue = error.issues[0]!;
  // networks[0].subnets[1], the way a user finds the field in a file
  const field = [root, ...issue.path.map(String)]
    .filter(Boolean)
    .join(".")
    .replace(/\.(\d+)(?=\.|$)/g, "[$1]");
  let message = issue.message;
  if (issue.code === "unrecognized_keys") {
    // A hostile file may carry a 100 KiB key: the message names it, not all of it.
    const keys = issue.keys.join('", "');
    message = `unknown key "${keys.length > 80 ? `${keys.slice(0, 80)}...` : keys}"`;
  }
  return { field, message: message.replace(/\s+/g, " ") };
}

const KIND_WORDS: Record<string, string> = {
  number: "a number",
  int: "a whole number",
  boolean: "true or false",
  array: "a list",
  string: "a string",
  object: "a mapping",
  null: "null",
};

/** zod's stock messages ("Invalid input: expected number, received NaN", "Too small: ...") said as a user would. */
function plainWords(issue: z.core.$ZodIssue, message: string): string {
  if (issue.code === "invalid_type") {
    const received = /received (\w+)$/.exec(message)?.[1];
    if (received === "undefined") return "is required";
    const expected = KIND_WORDS[issue.expected] ?? issue.expected;
    const got =
      received === undefined || received === "NaN" ? "" : `, not ${KIND_WORDS[received] ?? received}`;
    return `must be ${expected}${got}`;
  }
  if (issue.code === "too_small" && message.startsWith("Too small"))
    return issue.origin === "number" ? `must be at least ${issue.minimum}` : message;
  if (issue.code === "too_big" && message.startsWith("Too big"))
    return issue.origin === "number" ? `must be at most ${issue.maximum}` : message;
  return message;
}
