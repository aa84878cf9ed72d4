/**
 * Names of netctx objects and the kernel names derived from them. Interface names are limited to 15 bytes
 * (IFNAMSIZ 16 with the NUL), so a name that would derive a longer one is refused up front, naming the field.
 */
import { invalid } from "../errors.ts";
import { IFNAME_MAX, ifnameProblem, shown } from "../net/ifname.ts";

const NAME_RE = /^[a-z0-9][a-z0-9_-]*$/;
// Kernel interface names may not contain '/', ':', whitespace; we only allow what NAME_RE allows plus '.'.
const IFNAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Marks every kernel object we create, so gc can tell ours from anybody else's. */
export const PREFIX = "nc-";
export const NETNS_PREFIX = "netctx-";
/** Interface group of every host-side link we create ("nc"): the ownership mark gc and teardown rely on. */
export const LINK_GROUP = 0x6e63;

/**
 * The documented limit of context and network names, at every level and driver: the kernel interfaces they name are
 * nc-NAME, at most 15 bytes. Checked before the characters, so the user learns the limit at once.
 */
export const NAME_MAX = IFNAME_MAX - PREFIX.length;

export function checkName(field: string, name: string, max = NAME_MAX): void {
  if (name.length === 0) throw invalid(field, "must not be empty");
  if (name.length > max)
    throw invalid(
      field,
      `${shown(name)} is longer than ${max} characters (netctx names kernel interfaces nc-NAME, at most ${IFNAME_MAX} bytes)`,
    );
  if (!NAME_RE.test(name))
    throw invalid(
      field,
      `${shown(name)} may only contain lowercase letters, digits, '-' and '_', and must start with a letter or digit`,
    );
}

/** An interface name a user gives: what the kernel takes (net/ifname.ts), in the characters we allow. */
export function checkIfname(field: string, name: string): void {
  const problem = ifnameProblem(name);
  if (problem) throw invalid(field, problem);
  if (!IFNAME_RE.test(name)) throw invalid(field, `${shown(name)} is not a valid interface name`);
}

/** A derived interface name; a name that would not fit is refused naming the user's field, not the derived one. */
export function derivedIfname(field: string, owner: string, ifname: string, role: string): string {
  if (Buffer.byteLength(ifname) > IFNAME_MAX)
    throw invalid(
      field,
      `"${owner}" would make ${role} interface "${ifname}" longer than ${IFNAME_MAX} bytes; use a shorter name`,
    );
  return ifname;
}

export function bridgeIfname(network: string): string {
  return derivedIfname("name", network, `${PREFIX}${network}`, "the bridge");
}

/**
 * Host side of a context's veth on its n-th network: nc-web, nc-web.1, nc-web.2, ... The '.' is in no context's or
 * network's name, so a later veth never takes another record's name: with '-', context a's second veth was nc-a-1,
 * context a-1's first, and whichever came second deleted the other's link as a leftover of its own. (Segment
 * bridges, nc-XXXXXX.b1, have a letter after the '.'.)
 */
export function hostVethIfname(context: string, index: number): string {
  const name = index === 0 ? `${PREFIX}${context}` : `${PREFIX}${context}.${index}`;
  return derivedIfname("name", context, name, "the host-side veth");
}

/**
 * The only context names whose host-side veths can be called `ifname`: its base (nc-BASE) and each prefix of the base
 * that ends before a '.' (nc-a.1 is a's) or a '-' (nc-a-1 was a's second veth in records made before the '.').
 * Lets a holder be looked up by name instead of by reading every context's attachments.
 */
export function vethOwnerCandidates(ifname: string): string[] {
  if (!ifname.startsWith(PREFIX)) return [];
  const base = ifname.slice(PREFIX.length);
  const out = [base];
  for (let i = 1; i < base.length; i++) if (base[i] === "." || base[i] === "-") out.push(base.slice(0, i));
  return out;
}

export function contextNetnsName(context: string): string {
  return `${NETNS_PREFIX}${context}`;
}
