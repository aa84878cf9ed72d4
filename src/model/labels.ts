/**
 * A context's labels (issue 19): what policy selectors match. User labels follow Kubernetes label syntax, so a
 * selector copied from a NetworkPolicy means the same here. They live beside netctx's own marks in the same map
 * (ContextSpec.labels): apply's scene (SCENE_LABEL, "netctx.scene"), the CNI owner marks ("cni.containerId",
 * "cni.ifname", "cni.config", cni/verbs.ts) and the pod's namespace and name from CNI_ARGS (K8S_LABELS). A user may
 * set none of those keys: the marks decide what apply prunes and what CNI DEL and GC remove.
 */
import { invalid } from "../errors.ts";
import { shown } from "../net/ifname.ts";

/** Keys in these namespaces are netctx's own marks; a user label may not use them. */
export const RESERVED_LABEL_PREFIXES = ["netctx.", "cni.", "k8s."] as const;

/** The labels a CNI ADD makes from the runtime's CNI_ARGS (what kubelet and CRI runtimes pass). */
export const K8S_LABELS = { K8S_POD_NAMESPACE: "k8s.namespace", K8S_POD_NAME: "k8s.pod" } as const;

const NAME_MAX = 63;
const PREFIX_MAX = 253;
/** Kubernetes' label name and value: alphanumeric at both ends, '-', '_' and '.' inside. */
const NAME_RE = /^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/;
/** The optional key prefix: a DNS subdomain ("example.com/"). */
const PREFIX_RE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

export function isReservedLabel(key: string): boolean {
  return RESERVED_LABEL_PREFIXES.some((p) => key.startsWith(p));
}

/** Why `key` is not a label key, or undefined. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf("/");
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (prefix !== undefined) {
    if (prefix.length === 0 || prefix.length > PREFIX_MAX || !PREFIX_RE.test(prefix))
      return `key ${shown(key)} has an invalid prefix (a DNS subdomain of at most ${PREFIX_MAX} characters before "/")`;
  }
  if (name.length === 0) return `key ${shown(key)} has an empty name`;
  if (name.length > NAME_MAX)
    return `key ${shown(key)} is longer than ${NAME_MAX} characters (before any prefix)`;
  if (!NAME_RE.test(name))
    return `key ${shown(key)} may only contain letters, digits, '-', '_' and '.', and must start and end with a letter or digit`;
  return undefined;
}

/** Why `value` is not a label value, or undefined (empty is allowed, as in Kubernetes). */
export function labelValueProblem(key: string, value: string): string | undefined {
  if (value.length === 0) return undefined;
  if (value.length > NAME_MAX) return `value of ${shown(key)} is longer than ${NAME_MAX} characters`;
  if (!NAME_RE.test(value))
    return `value ${shown(value)} of ${shown(key)} may only contain letters, digits, '-', '_' and '.', and must start and end with a letter or digit`;
  return undefined;
}

/** A label one of netctx's marks carries (a 64-hex container id is longer than a label value may be): one line, bounded. */
function markValueProblem(key: string, value: string): string | undefined {
  if (value.length > PREFIX_MAX) return `value of ${shown(key)} is longer than ${PREFIX_MAX} characters`;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
  if (/[\u0000-\u001f\u007f]/.test(value)) return `value of ${shown(key)} has control characters`;
  return undefined;
}

/**
 * Labels a user gives (`create --label`, an apply file's `labels:`, a CNI config's `labels`): Kubernetes syntax,
 * and none of netctx's own keys. `field`: the field the error names.
 */
export function checkUserLabels(field: string, labels: Readonly<Record<string, string>>): void {
  for (const [key, value] of Object.entries(labels)) {
    if (isReservedLabel(key))
      throw invalid(
        field,
        `key ${shown(key)} is netctx's own (keys starting with ${RESERVED_LABEL_PREFIXES.map((p) => `"${p}"`).join(", ")} are reserved)`,
      );
    const problem = labelKeyProblem(key) ?? labelValueProblem(key, value);
    if (problem) throw invalid(field, problem);
  }
}

/**
 * Every label of a context the engine records: user labels as checkUserLabels says, netctx's marks bounded. The
 * engine cannot tell who sent a mark (the API takes both), so the edges refuse reserved keys from users.
 */
export function checkRecordedLabels(field: string, labels: Readonly<Record<string, string>>): void {
  for (const [key, value] of Object.entries(labels)) {
    const problem = isReservedLabel(key)
      ? markValueProblem(key, value)
      : (labelKeyProblem(key) ?? labelValueProblem(key, value));
    if (problem) throw invalid(field, problem);
  }
}

/** `KEY=VALUE` as `--label` and selectors write it. */
export function parseLabelArg(field: string, text: string): [string, string] {
  const eq = text.indexOf("=");
  if (eq <= 0) throw invalid(field, `${shown(text)} is not KEY=VALUE`);
  return [text.slice(0, eq), text.slice(eq + 1)];
}

/** `--label K=V` given several times as one map; a key given twice is refused (which one was meant?). */
export function labelsFromArgs(field: string, args: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const arg of args) {
    const [key, value] = parseLabelArg(field, arg);
    if (Object.hasOwn(out, key)) throw invalid(field, `key ${shown(key)} is given twice`);
    out[key] = value;
  }
  checkUserLabels(field, out);
  return out;
}
