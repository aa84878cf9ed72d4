/**
 * One interface for every level of the seed's table. The engine owns state and addresses; a level owns the
 * kernel objects that realise a context.
 */
import type { Host } from "../host.ts";
import type { Bandwidth, Published } from "../model/publish.ts";
import type { Attachment } from "../networks/driver.ts";
import type { ContextRecord, Level } from "../state/store.ts";

/** What the engine records about a context before touching the kernel, so gc can finish or undo it. */
export interface ContextSpec {
  attachments: Attachment[];
  /** l2: path of the context's own netns. */
  netns?: string;
  /** l2: the netns belongs to somebody else (a container runtime): never delete it. */
  netnsExternal?: boolean;
  /** Owner marks from ContextInput.labels (CNI: container id, ifname, config name). */
  labels?: Record<string, string>;
  /** l3 and socket: the context's cgroup directory. */
  cgroup?: string;
  /** l3: the context's routing table. */
  table?: number;
  routes?: string[];
  /** Published ports (firewall/publish.ts). */
  publish?: Published[];
  /** l2: rate limits on the host side of the first attachment (networks/bandwidth.ts). */
  bandwidth?: Bandwidth;
}

export interface LevelDriver {
  readonly level: Level;
  /** Make the context's kernel objects. On error the engine calls teardown, so partial work is undone. */
  create(host: Host, name: string, spec: ContextSpec): void;
  /** Remove them; tolerates objects that are already gone (CNI DEL semantics). */
  teardown(host: Host, name: string, spec: ContextSpec): void;
  /** argv that runs a command inside the context. */
  execArgv(record: ContextRecord, command: string[]): string[];
}

export function specOf(record: ContextRecord): ContextSpec {
  return record.spec as unknown as ContextSpec;
}
