/**
 * The overlay data path driven by hand inside a test host (test/overlay/datapath.test.ts), standing in for the
 * engine's etcd watches: `node --import tsx test/utils/overlay-agent.ts JSON`, run in the host's namespaces, with
 * JSON = { local, peers?, members?, ports? }. It makes the VXLAN device, syncs the peers and the member guard when
 * given, and prints { device, sync?, members? } as JSON. Each run is a fresh process, so a sync observes the kernel
 * first (sync.reads) and then changes only what differs (sync.kernelOps).
 */
import { syncMembers } from "../../src/firewall/overlay-members.ts";
import { Host } from "../../src/host.ts";
import {
  ensureOverlayDevice,
  type OverlayLocal,
  type OverlayPeer,
  syncPeers,
} from "../../src/networks/overlay-peers.ts";
import { testConfig } from "./config.ts";

export const OVERLAY_AGENT = import.meta.filename;

export interface AgentInput {
  local: OverlayLocal;
  peers?: OverlayPeer[];
  members?: string[];
  ports?: number[];
}

if (process.argv[1] === import.meta.filename) {
  const input = JSON.parse(process.argv[2] ?? "{}") as AgentInput;
  const host = Host.open(testConfig());
  try {
    const out: Record<string, unknown> = { device: ensureOverlayDevice(host, input.local) };
    if (input.peers) out.sync = syncPeers(host, input.local, input.peers);
    if (input.members) out.members = syncMembers(host, input.members, input.ports);
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } finally {
    host.close();
  }
}
