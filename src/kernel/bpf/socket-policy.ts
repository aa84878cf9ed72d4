/**
 * A context's socket policy on its cgroup: the programs of programs.ts, loaded with the context's
 * addresses as constants and attached with BPF_F_ALLOW_MULTI. Replacing a policy attaches the new programs
 * before detaching the old ones, so the cgroup is never unconfined in between. Programs of others on the
 * same cgroup (not named nctx_*) are left alone.
 */
import { invalid, NetctxError } from "../../errors.ts";
import { ipBytes, parseIp } from "../../net/cidr.ts";
import { cgroup2Root } from "../cgroup.ts";
import { KernelError } from "../errors.ts";
import type { AttachTypeName } from "./abi.ts";
import {
  attachProgram,
  detachFrom,
  detachProgram,
  loadProgram,
  openCgroup,
  progFdById,
  progInfo,
  queryPrograms,
  withFd,
} from "./attach.ts";
import {
  addrWords,
  type PolicyWords,
  PROGRAM_PREFIX,
  policyPrograms,
  sockCreateProgram,
} from "./programs.ts";
import { closeFd } from "./syscall.ts";

export interface SocketPolicy {
  ipv4?: string;
  ipv6?: string;
  fwmark?: number;
}

export const POLICY_HOOKS: readonly AttachTypeName[] = [
  "CGROUP_INET4_BIND",
  "CGROUP_INET6_BIND",
  "CGROUP_INET4_CONNECT",
  "CGROUP_INET6_CONNECT",
  "CGROUP_UDP4_SENDMSG",
  "CGROUP_UDP6_SENDMSG",
  "CGROUP_INET_SOCK_CREATE",
  "CGROUP_INET_INGRESS",
];

function addressBytes(text: string, family: 4 | 6, field: string): Uint8Array {
  const ip = parseIp(text, field);
  if (ip.family !== family) throw invalid(field, `${text} is not an IPv${family} address`);
  return ipBytes(ip);
}

export function policyWords(policy: SocketPolicy): PolicyWords {
  const words: PolicyWords = {};
  if (policy.ipv4 !== undefined) words.ipv4 = addrWords(addressBytes(policy.ipv4, 4, "ipv4"));
  if (policy.ipv6 !== undefined) words.ipv6 = addrWords(addressBytes(policy.ipv6, 6, "ipv6"));
  if (policy.fwmark !== undefined) {
    if (!Number.isInteger(policy.fwmark) || policy.fwmark < 0 || policy.fwmark > 0xffffffff)
      throw invalid("fwmark", `${policy.fwmark} is not a 32-bit unsigned integer`);
    words.fwmark = policy.fwmark;
  }
  return words;
}

interface Attached {
  type: AttachTypeName;
  fd: number;
}

/** Our programs currently attached to the cgroup, each with an fd the caller must close. */
function ourPrograms(cgroupFd: number): Attached[] {
  const out: Attached[] = [];
  for (const type of POLICY_HOOKS) {
    for (const id of queryPrograms(cgroupFd, type)) {
      let fd: number;
      try {
        fd = progFdById(id);
      } catch (err) {
        // Detached (or freed) between query and lookup.
        if (err instanceof KernelError && err.errnoName === "ENOENT") continue;
        throw err;
      }
      if (progInfo(fd).name.startsWith(PROGRAM_PREFIX)) out.push({ type, fd });
      else closeFd(fd);
    }
  }
  return out;
}

export function attachSocketPolicy(cgroupPath: string, policy: SocketPolicy): void {
  const programs = policyPrograms(policyWords(policy));
  const loaded: Attached[] = [];
  const attached: Attached[] = [];
  let old: Attached[] = [];
  try {
    for (const p of programs) loaded.push({ type: p.attachType, fd: loadProgram(p) });
    withFd(openCgroup(cgroupPath), (cg) => {
      old = ourPrograms(cg);
      try {
        for (const p of loaded) {
          attachProgram(cg, p.fd, p.type);
          attached.push(p);
        }
      } catch (err) {
        for (const p of attached) detachProgram(cg, p.fd, p.type);
        throw err;
      }
      for (const p of old) detachProgram(cg, p.fd, p.type);
    });
  } finally {
    for (const p of [...loaded, ...old]) closeFd(p.fd);
  }
}

export function detachSocketPolicy(cgroupPath: string): void {
  detachFrom(cgroupPath, ourPrograms);
}

/** Every program attached directly to the cgroup at our hooks (ours or not); hooks with none are left out. */
export function querySocketPolicy(cgroupPath: string): { attachType: string; progIds: number[] }[] {
  let cg: number;
  try {
    cg = openCgroup(cgroupPath);
  } catch (err) {
    if (err instanceof NetctxError && err.code === "not-found") return [];
    throw err;
  }
  return withFd(cg, () =>
    POLICY_HOOKS.map((attachType) => ({ attachType, progIds: queryPrograms(cg, attachType) })).filter(
      (h) => h.progIds.length > 0,
    ),
  );
}

let availability: { ok: true } | { ok: false; reason: string } | undefined;

/** Whether this machine can run socket policies: cgroup2 mounted, bpf(2) usable, cgroup programs loadable. */
export function bpfAvailable(): { ok: true } | { ok: false; reason: string } {
  if (availability) return availability;
  try {
    cgroup2Root();
    closeFd(loadProgram(sockCreateProgram(undefined)));
    availability = { ok: true };
  } catch (err) {
    let reason = err instanceof Error ? err.message.split("\n")[0]! : String(err);
    if (err instanceof KernelError && err.errnoName === "EPERM")
      reason = `${reason} (loading BPF programs needs root or CAP_BPF + CAP_NET_ADMIN)`;
    availability = { ok: false, reason };
  }
  return availability;
}
