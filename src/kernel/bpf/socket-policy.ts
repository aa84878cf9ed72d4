/**
 * A context's socket policy on its cgroup: the programs of programs.ts, loaded with the context's
 * addresses as constants and attached with BPF_F_ALLOW_MULTI. Replacing a policy attaches the new programs
 * before detaching the old ones, so the cgroup is never unconfined in between. Programs of others on the
 * same cgroup (not named nctx_*) are left alone.
 */
import { invalid, NetctxError } from "../../errors.ts";
import { ipBytes, parseIp } from "../../net/cidr.ts";
import { ifnameProblem } from "../../net/ifname.ts";
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
import type { HostPort } from "./jail-loopback.ts";
import { addrWords, type ProgramSpec } from "./program-spec.ts";
import {
  devicePrograms,
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
  /** l3: the devices of its networks, the only ones its sockets may be given (names, and ifindexes as of now). */
  devices?: { names: string[]; ifindexes: number[] };
  /** l3: per family it routes all by itself, the ifindexes its packets may leave through (lo always may). */
  egress?: { ipv4?: number[]; ipv6?: number[] };
  /** Host loopback ports it may reach; any other loopback destination is its own address (jail-loopback.ts). */
  hostPorts?: HostPort[];
  /** The traffic counters' map fd (counter-program.ts): packets its programs refuse are counted there. */
  dropCounters?: number;
}

/** The l3 device guard's hooks (device-programs.ts): their programs hold ifindexes. */
const DEVICE_HOOKS: readonly AttachTypeName[] = ["CGROUP_SETSOCKOPT", "CGROUP_INET_EGRESS"];

export const POLICY_HOOKS: readonly AttachTypeName[] = [
  "CGROUP_INET4_BIND",
  "CGROUP_INET6_BIND",
  "CGROUP_INET4_CONNECT",
  "CGROUP_INET6_CONNECT",
  "CGROUP_UDP4_SENDMSG",
  "CGROUP_UDP6_SENDMSG",
  "CGROUP_UDP4_RECVMSG",
  "CGROUP_UDP6_RECVMSG",
  "CGROUP_INET_SOCK_CREATE",
  "CGROUP_INET_INGRESS",
  ...DEVICE_HOOKS,
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
  if (policy.devices) {
    // The kernel's name rule (net/ifname.ts), in printable ASCII: the program compares the name byte by byte.
    for (const name of policy.devices.names)
      if (ifnameProblem(name) !== undefined || !/^[\x21-\x7e]+$/.test(name))
        throw invalid("devices", `${JSON.stringify(name)} is not an interface name`);
    words.devices = { names: policy.devices.names, ifindexes: policy.devices.ifindexes.map(ifindex) };
  }
  if (policy.hostPorts?.length) {
    for (const p of policy.hostPorts)
      if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535 || !["tcp", "udp"].includes(p.protocol))
        throw invalid("allowHostPorts", `${p.port}/${p.protocol} is not a port (1-65535) over tcp or udp`);
    words.hostPorts = policy.hostPorts.map((p) => ({ port: p.port, protocol: p.protocol }));
  }
  if (policy.dropCounters !== undefined) words.dropCounters = policy.dropCounters;
  if (policy.egress) {
    words.egress = {};
    if (policy.egress.ipv4) words.egress.ipv4 = policy.egress.ipv4.map(ifindex);
    if (policy.egress.ipv6) words.egress.ipv6 = policy.egress.ipv6.map(ifindex);
  }
  return words;
}

function ifindex(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > 0x7fffffff) throw invalid("devices", `${n} is not an ifindex`);
  return n;
}

interface Attached {
  type: AttachTypeName;
  fd: number;
}

/** Our programs currently attached to the cgroup at `hooks`, each with an fd the caller must close. */
function ourPrograms(cgroupFd: number, hooks: readonly AttachTypeName[] = POLICY_HOOKS): Attached[] {
  const out: Attached[] = [];
  for (const type of hooks) {
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
  replacePrograms(cgroupPath, policyPrograms(policyWords(policy)), POLICY_HOOKS);
}

/**
 * Only the l3 device guard of `policy` (its other programs are attached already): l3 attaches it once its table is
 * filled, since the egress devices are those of the table's routes.
 */
export function attachDevicePolicy(cgroupPath: string, policy: SocketPolicy): void {
  replacePrograms(cgroupPath, devicePrograms(policyWords(policy)), DEVICE_HOOKS);
}

/** Attach `programs`, then detach what of ours was at `hooks` before. */
function replacePrograms(
  cgroupPath: string,
  programs: ProgramSpec[],
  hooks: readonly AttachTypeName[],
): void {
  const loaded: Attached[] = [];
  const attached: Attached[] = [];
  let old: Attached[] = [];
  try {
    for (const p of programs) loaded.push({ type: p.attachType, fd: loadProgram(p) });
    withFd(openCgroup(cgroupPath), (cg) => {
      old = ourPrograms(cg, hooks);
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

/**
 * Why our programs on the cgroup are not those of `policy`, or undefined when they are: none at all, two at one
 * hook, a hook of the policy without one or one outside it with one, or device programs made for other ifindexes
 * (a device gc made again has a new one). Those are compared by the kernel's tag of a fresh load; the others hold
 * only what the context's record holds.
 */
export function policyDrift(cgroupPath: string, policy: SocketPolicy): string | undefined {
  const programs = policyPrograms(policyWords(policy));
  const tags = new Map<AttachTypeName, string[]>();
  let cg: number | undefined;
  try {
    cg = openCgroup(cgroupPath);
  } catch (err) {
    if (!(err instanceof NetctxError && err.code === "not-found")) throw err;
  }
  if (cg !== undefined)
    withFd(cg, () => {
      for (const p of ourPrograms(cg)) {
        try {
          tags.set(p.type, [...(tags.get(p.type) ?? []), progInfo(p.fd).tag]);
        } finally {
          closeFd(p.fd);
        }
      }
    });
  if (tags.size === 0) return "context's socket policy is missing";
  const doubled = [...tags].filter(([, t]) => t.length > 1).map(([hook]) => hook);
  if (doubled.length > 0) return `two policies attached at ${doubled.join(", ")}`;
  const wanted = new Set(programs.map((p) => p.attachType));
  const missing = [...wanted].filter((hook) => !tags.has(hook));
  if (missing.length > 0) return `nothing of ours at ${missing.join(", ")}`;
  const extra = [...tags.keys()].filter((hook) => !wanted.has(hook));
  if (extra.length > 0) return `a program its policy does not have at ${extra.join(", ")}`;
  const stale = programs
    .filter((p) => DEVICE_HOOKS.includes(p.attachType) && tags.get(p.attachType)?.[0] !== tagOf(p))
    .map((p) => p.attachType);
  if (stale.length > 0) return `the programs at ${stale.join(", ")} name other devices than there are now`;
  return undefined;
}

function tagOf(program: ProgramSpec): string {
  return withFd(loadProgram(program), (fd) => progInfo(fd).tag);
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
