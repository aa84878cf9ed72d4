/**
 * What a runtime hands a CNI plugin: the CNI_* environment and a network config on stdin. Parsed at the edge with
 * zod; the first problem becomes a CniError with the spec's code (6 undecodable, 7 invalid config, 4 bad env,
 * 1 unsupported version).
 */
import { z } from "zod";
import { NetctxError } from "../errors.ts";
import { parseInput } from "../model/schemas.ts";
import { CniCode, CniError } from "./errors.ts";

export const SUPPORTED_VERSIONS = ["0.4.0", "1.0.0", "1.1.0"] as const;
export const VERBS = ["ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS"] as const;
export type Verb = (typeof VERBS)[number];

const PortMappingSchema = z.object({
  hostPort: z.number().int().min(1).max(65535),
  containerPort: z.number().int().min(1).max(65535),
  protocol: z.string().optional(),
  hostIP: z.string().optional(),
});
export type PortMapping = z.infer<typeof PortMappingSchema>;

const BandwidthSchema = z.object({
  ingressRate: z.number().int().nonnegative().optional(),
  ingressBurst: z.number().int().nonnegative().optional(),
  egressRate: z.number().int().nonnegative().optional(),
  egressBurst: z.number().int().nonnegative().optional(),
});

/** Capabilities a runtime may fill in; others (aliases, ...) pass unchecked. */
const RuntimeConfigSchema = z.looseObject({
  portMappings: z.array(PortMappingSchema).optional(),
  ips: z.array(z.string()).optional(),
  mac: z.string().optional(),
  bandwidth: BandwidthSchema.optional(),
});

const DnsSchema = z.object({
  nameservers: z.array(z.string()).optional(),
  domain: z.string().optional(),
  search: z.array(z.string()).optional(),
  options: z.array(z.string()).optional(),
});

const AttachmentRefSchema = z.object({ containerID: z.string(), ifname: z.string() });

/** A previous plugin's result: kept loose, we only read interfaces, ips and routes. */
const PrevResultSchema = z.looseObject({
  cniVersion: z.string().optional(),
  interfaces: z
    .array(z.looseObject({ name: z.string(), mac: z.string().optional(), sandbox: z.string().optional() }))
    .optional(),
  ips: z
    .array(
      z.looseObject({
        address: z.string(),
        gateway: z.string().optional(),
        interface: z.number().int().optional(),
      }),
    )
    .optional(),
  routes: z.array(z.looseObject({ dst: z.string(), gw: z.string().optional() })).optional(),
  dns: DnsSchema.optional(),
});
export type PrevResult = z.infer<typeof PrevResultSchema>;

export const NetConfSchema = z.strictObject({
  cniVersion: z.string(),
  name: z.string().min(1, "must not be empty"),
  type: z.string(),
  // standard keys (spec section 2.1 and conventions)
  args: z.record(z.string(), z.unknown()).optional(),
  ipMasq: z.boolean().optional(),
  ipam: z.record(z.string(), z.unknown()).optional(),
  dns: DnsSchema.optional(),
  capabilities: z.record(z.string(), z.boolean()).optional(),
  runtimeConfig: RuntimeConfigSchema.optional(),
  prevResult: PrevResultSchema.optional(),
  "cni.dev/valid-attachments": z.array(AttachmentRefSchema).optional(),
  // netctx keys
  network: z.string().optional(),
  // Any registered network driver (networks/registry.ts names them); an unknown one is refused by name there.
  driver: z.string().min(1).optional(),
  subnets: z.array(z.string()).min(1).optional(),
  gateway: z.union([z.string(), z.array(z.string())]).optional(),
  nat: z.boolean().optional(),
  mtu: z.number().int().min(68).max(65535).optional(),
  /** Labels every context of this config gets (policy selectors match them; model/labels.ts syntax). */
  labels: z.record(z.string(), z.string()).optional(),
});
export type NetConf = z.infer<typeof NetConfSchema>;

export interface CniEnv {
  command: Verb;
  containerId: string;
  netns: string;
  ifname: string;
  args: Map<string, string>;
  path: string;
}

/** The env a verb needs; missing or malformed ones are code 4. */
export function parseEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = env.CNI_COMMAND ?? "";
  if (!command) throw new CniError(CniCode.invalidEnv, "CNI_COMMAND is not set");
  if (!(VERBS as readonly string[]).includes(command))
    throw new CniError(
      CniCode.invalidEnv,
      `CNI_COMMAND "${clip(command)}" is unknown (known: ${VERBS.join(", ")})`,
    );
  const verb = command as Verb;
  const need = (key: string): string => {
    const v = env[key] ?? "";
    if (!v) throw new CniError(CniCode.invalidEnv, `${key} is not set (required for ${verb})`);
    return v;
  };
  const perContainer = verb === "ADD" || verb === "DEL" || verb === "CHECK";
  const containerId = perContainer ? need("CNI_CONTAINERID") : "";
  const ifname = perContainer ? need("CNI_IFNAME") : "";
  // DEL may come after the runtime lost the netns: it is optional there.
  const netns = verb === "ADD" || verb === "CHECK" ? need("CNI_NETNS") : (env.CNI_NETNS ?? "");
  if (containerId && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(containerId))
    throw new CniError(
      CniCode.invalidEnv,
      `CNI_CONTAINERID "${clip(containerId)}" has characters outside [A-Za-z0-9_.-]`,
    );
  return {
    command: verb,
    containerId,
    netns,
    ifname,
    args: parseArgs(env.CNI_ARGS ?? ""),
    path: env.CNI_PATH ?? "",
  };
}

/** A hostile value echoed in an error stays short: runtimes log the whole message (the fuzz test sends 100 KiB). */
export function clip(value: string): string {
  return value.length > 80 ? `${value.slice(0, 80)}...` : value;
}

/**
 * The keys kubelet and CRI runtimes (containerd, CRI-O) pass: the pod's namespace and name become the context's
 * labels (model/labels.ts K8S_LABELS); the infra container id and pod uid are taken and not used.
 */
const KNOWN_ARGS = new Set([
  "IgnoreUnknown",
  "IP",
  "MAC",
  "K8S_POD_NAMESPACE",
  "K8S_POD_NAME",
  "K8S_POD_INFRA_CONTAINER_ID",
  "K8S_POD_UID",
]);

/** CNI_ARGS "K=V;K=V"; unknown keys are an error unless IgnoreUnknown=1 (the reference plugins' convention). */
export function parseArgs(text: string): Map<string, string> {
  // Keys and values are names and addresses; a control character is an injection attempt or a broken caller.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
  if (/[\x00-\x1f\x7f]/.test(text))
    throw new CniError(CniCode.invalidEnv, "CNI_ARGS: control characters are not allowed");
  const out = new Map<string, string>();
  for (const pair of text.split(";").filter(Boolean)) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new CniError(CniCode.invalidEnv, `CNI_ARGS: "${clip(pair)}" is not KEY=VALUE`);
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  const ignore = /^(1|true)$/i.test(out.get("IgnoreUnknown") ?? "");
  if (!ignore) {
    const unknown = [...out.keys()].filter((k) => !KNOWN_ARGS.has(k));
    if (unknown.length)
      throw new CniError(
        CniCode.invalidEnv,
        `CNI_ARGS: unknown key "${clip(unknown.join('", "'))}" (set IgnoreUnknown=1 to allow)`,
      );
  }
  return out;
}

/** The config on stdin: JSON (code 6), then the schema (code 7), then the version (code 1). */
export function parseConf(stdin: string): NetConf {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(CniCode.decode, `network config is not valid JSON: ${(err as Error).message}`);
  }
  let conf: NetConf;
  try {
    conf = parseInput(NetConfSchema, raw);
  } catch (err) {
    if (err instanceof NetctxError) throw new CniError(CniCode.invalidConfig, err.message);
    throw err;
  }
  checkVersion(conf.cniVersion);
  return conf;
}

export function checkVersion(version: string): void {
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(version))
    throw new CniError(
      CniCode.incompatibleVersion,
      `cniVersion "${clip(version)}" is not supported (supported: ${SUPPORTED_VERSIONS.join(", ")})`,
    );
}

/** Order the spec's versions; "1.0.0" > "0.4.0". */
export function versionAtLeast(version: string, min: string): boolean {
  const a = version.split(".").map(Number);
  const b = min.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return true;
}
