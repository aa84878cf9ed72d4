/**
 * This host as a member of a netctx cluster: the etcd client, the node's membership (its leased record) and the
 * cluster-wide views, made from the ClusterSettings the edge read (config.ts). The engine (`netctx serve --etcd`)
 * holds one; the CLI with --etcd uses the etcd client alone (status, forget) without joining.
 */
import type { ClusterSettings } from "../config.ts";
import { Etcd } from "./etcd.ts";
import { type Forgotten, forgetNode } from "./forget.ts";
import { Membership, type MembershipState, type NodeFacts } from "./membership.ts";
import { type ClusterStatus, clusterStatus } from "./status.ts";
import { underlayToward } from "./underlay.ts";

export interface MemberStatus extends ClusterStatus {
  /** This engine's view of its own membership (registered or not, and why). */
  member: MembershipState;
}

export class ClusterMember {
  private constructor(
    readonly etcd: Etcd,
    private readonly membership: Membership,
    /** The address peers reach this node at (VXLAN's local end). */
    readonly underlay: string,
  ) {}

  /**
   * Joins: resolves the underlay (the kernel's source toward etcd unless given) and starts registering, without
   * waiting for etcd: the engine serves local work at once, and an unreachable etcd is logged and retried.
   */
  static async join(
    settings: ClusterSettings,
    o: { version: string; facts: () => NodeFacts; log: (line: string) => void },
  ): Promise<ClusterMember> {
    const underlay = settings.underlay ?? (await underlayToward(settings.endpoints[0]!));
    const etcd = await Etcd.open(settings);
    const membership = new Membership({
      etcd,
      name: settings.nodeName,
      underlay,
      ttl: settings.nodeTtl,
      version: o.version,
      facts: o.facts,
      log: o.log,
    });
    void membership.start();
    return new ClusterMember(etcd, membership, underlay);
  }

  get name(): string {
    return this.membership.state().name;
  }

  /** Publish the node record now rather than at the next renewal (a new VTEP MAC or block: peers wait for it). */
  refresh(): void {
    void this.membership.tick();
  }

  /** This node's membership as the engine knows it now (no etcd request): registered, last renewal, error. */
  memberState(): MembershipState {
    return this.membership.state();
  }

  async status(): Promise<MemberStatus> {
    const member = this.membership.state();
    return { self: member.name, ...(await clusterStatus(this.etcd)), member };
  }

  forget(node: string): Promise<Forgotten> {
    return forgetNode(this.etcd, node);
  }

  async close(): Promise<void> {
    await this.membership.stop();
    this.etcd.close();
  }
}
