/**
 * Bandwidth limits of an l2 context, enforced on the host side where the context cannot lift them:
 *  - towards the context: a tbf root qdisc on its host-side veth (what the host sends into the veth);
 *  - from the context: what arrives on the host-side veth is redirected (ingress qdisc, matchall, mirred) to an
 *    ifb device `nb-CTX` whose root tbf shapes it. tc cannot shape a device's ingress directly, only police
 *    (drop) it, which TCP handles far worse than a queue. cls_matchall is not in this kernel; u32 0 0 matches all.
 * The ifb carries our interface group (gc knows it by name from the record); it is deleted on rm, while the
 * veth's qdiscs go with the veth. Through the `tc` binary (one `tc -batch` per change) for now.
 */
import { spawnSync } from "node:child_process";
import { NetctxError } from "../errors.ts";
import type { Host } from "../host.ts";
import { LINK_GROUP, PREFIX } from "../model/names.ts";
import type { Bandwidth } from "../model/publish.ts";
import { deleteOwnLink } from "./common.ts";

const LATENCY = "25ms";

/** The ifb of a host-side veth: nc-web -> nb-web (same length, so it fits whenever the veth name does). */
export function ifbName(hostIfname: string): string {
  if (!hostIfname.startsWith(PREFIX))
    throw new NetctxError("internal", `bandwidth: ${hostIfname} is not ours`);
  return `nb-${hostIfname.slice(PREFIX.length)}`;
}

/** tbf's burst in bytes: the given one (bits), else 50 ms of the rate and at least one 64 KiB GSO packet. */
function burstBytes(rate: number, burst: number | undefined): number {
  if (burst !== undefined) return Math.max(1600, Math.ceil(burst / 8));
  return Math.max(65536, Math.ceil(rate / 8 / 20));
}

function tbf(dev: string, rate: number, burst: number | undefined): string {
  return `qdisc replace dev ${dev} root handle 1: tbf rate ${rate}bit burst ${burstBytes(rate, burst)} latency ${LATENCY}`;
}

export function runTc(host: Host, lines: string[], tolerate = false): void {
  if (lines.length === 0) return;
  const r = spawnSync("tc", [...(tolerate ? ["-force"] : []), "-batch", "-"], {
    input: `${lines.join("\n")}\n`,
    encoding: "utf8",
    env: host.config.toolEnv,
  });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    if (code === "ENOENT")
      throw new NetctxError("unsupported", "bandwidth: the tc binary was not found (install iproute2)");
    throw new NetctxError("kernel", `tc: ${r.error.message}`);
  }
  if (r.status !== 0 && !tolerate) {
    const first = r.stderr.split("\n").find((l) => l.trim() !== "") ?? `exit ${r.status}`;
    throw new NetctxError("kernel", `tc: ${first.trim()}`);
  }
}

/** Apply the limits to a context's host-side veth (which must exist). */
export function limitBandwidth(host: Host, hostIfname: string, bw: Bandwidth): void {
  const lines: string[] = [];
  if (bw.ingressRate !== undefined) lines.push(tbf(hostIfname, bw.ingressRate, bw.ingressBurst));
  if (bw.egressRate !== undefined) {
    const ifb = ifbName(hostIfname);
    const mtu = host.rtnl.linkGet(hostIfname)?.mtu;
    deleteOwnLink(host, ifb);
    host.rtnl.linkAdd({ name: ifb, kind: "ifb", up: true, ...host.linkMark, ...(mtu ? { mtu } : {}) });
    lines.push(
      tbf(ifb, bw.egressRate, bw.egressBurst),
      `qdisc replace dev ${hostIfname} handle ffff: ingress`,
      `filter add dev ${hostIfname} parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev ${ifb}`,
    );
  }
  runTc(host, lines);
}

/** Remove the ifb and, when the veth is still there, its qdiscs; anything missing is fine. */
export function unlimitBandwidth(host: Host, hostIfname: string): void {
  if (host.rtnl.linkGet(hostIfname)?.group === LINK_GROUP)
    runTc(host, [`qdisc del dev ${hostIfname} root`, `qdisc del dev ${hostIfname} ingress`], true);
  deleteOwnLink(host, ifbName(hostIfname));
}

export interface LiveLimit {
  rate: number;
  burst: number;
}

/** What tc reports now: tbf rates in bits per second (inspect shows these beside the recorded limits). */
export function liveBandwidth(host: Host, hostIfname: string): { ingress?: LiveLimit; egress?: LiveLimit } {
  const read = (dev: string): LiveLimit | undefined => {
    const r = spawnSync("tc", ["-j", "qdisc", "show", "dev", dev], {
      encoding: "utf8",
      env: host.config.toolEnv,
    });
    if (r.status !== 0) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(r.stdout || "[]");
    } catch {
      return undefined;
    }
    const q = (Array.isArray(parsed) ? parsed : []).find(
      (x: { kind?: string; root?: boolean }) => x.kind === "tbf" && x.root === true,
    ) as { options?: { rate?: number; burst?: number } } | undefined;
    if (q?.options?.rate === undefined) return undefined;
    // tc -j reports the rate in bytes per second.
    return { rate: q.options.rate * 8, burst: q.options.burst ?? 0 };
  };
  const ingress = read(hostIfname);
  const egress = hostIfname.startsWith(PREFIX) ? read(ifbName(hostIfname)) : undefined;
  return { ...(ingress ? { ingress } : {}), ...(egress ? { egress } : {}) };
}
