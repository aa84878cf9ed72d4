/**
 * The topology as cytoscape elements: hosts contain networks, networks contain contexts (compound nodes). No edge
 * joins two contexts (n² at 1000 contexts); a context on several networks sits in its first and has one edge to each
 * other. A network with more contexts than `collapseAbove` shows one node per level ("l2 × 412") until expanded,
 * so 1000 contexts draw as a few dozen nodes. Positions are computed here (a grid per network, networks in rows):
 * O(n), the same picture on every refresh, where a force layout would take seconds at this size and move nodes.
 */

export interface ContextInfo {
  name: string;
  level: string;
  status: string;
  networks: string[];
  addresses: string[];
  node?: string;
}

export interface NetworkInfo {
  name: string;
  driver: string;
  subnets: { cidr: string }[];
}

/** Another node of the cluster, as `GET /v1/cluster` lists it: its own contexts live in its engine, not here. */
export interface PeerInfo {
  name: string;
  underlay: string;
  contexts: number;
  /** The overlay networks it holds address blocks of. */
  networks: string[];
}

export interface TopologyOptions {
  /** This engine's node: the host of every local network and context. */
  node: string;
  /** The cluster's other nodes; none on a lone host. */
  peers?: readonly PeerInfo[];
  /** Networks the user opened although they are large. */
  expanded: ReadonlySet<string>;
  collapseAbove: number;
}

export interface ElementDef {
  group: "nodes" | "edges";
  data: Record<string, string | number>;
  position?: { x: number; y: number };
  classes?: string;
}

const CELL_W = 110;
const CELL_H = 56;
const NET_GAP = 70;
const ROW_WIDTH = 1400;

export const LEVELS = ["l2", "l3", "socket"] as const;

export function hostId(node: string): string {
  return `host:${node}`;
}

export function networkId(node: string, network: string): string {
  return `net:${node}/${network}`;
}

export function contextId(name: string): string {
  return `ctx:${name}`;
}

export function groupId(node: string, network: string, level: string): string {
  return `grp:${node}/${network}/${level}`;
}

/** Whether a network shows its contexts one by one. */
export function isExpanded(network: string, members: number, opts: TopologyOptions): boolean {
  return members <= opts.collapseAbove || opts.expanded.has(network);
}

export function topology(
  contexts: readonly ContextInfo[],
  networks: readonly NetworkInfo[],
  opts: TopologyOptions,
): ElementDef[] {
  const node = opts.node;
  const out: ElementDef[] = [];
  const byId = new Map<string, ElementDef>();
  const add = (el: ElementDef) => {
    out.push(el);
    byId.set(String(el.data.id), el);
  };
  add({ group: "nodes", data: { id: hostId(node), label: node }, classes: "host" });
  const members = new Map<string, ContextInfo[]>(networks.map((n) => [n.name, []]));
  const loose: ContextInfo[] = [];
  for (const c of contexts) {
    const first = c.networks[0];
    if (first !== undefined && members.has(first)) members.get(first)!.push(c);
    else loose.push(c);
  }
  const drivers = new Map(networks.map((n) => [n.name, n.driver]));
  // Where each context is drawn: itself, or its level's group node in a collapsed network.
  const drawnAs = new Map<string, string>();
  let x = 0;
  let y = 0;
  let rowHeight = 0;
  const place = (items: { id: string }[], cols: number): { w: number; h: number } => {
    const rows = Math.max(1, Math.ceil(items.length / cols));
    const w = cols * CELL_W;
    if (x > 0 && x + w > ROW_WIDTH) {
      x = 0;
      y += rowHeight + NET_GAP;
      rowHeight = 0;
    }
    items.forEach((item, i) => {
      byId.get(item.id)!.position = { x: x + (i % cols) * CELL_W, y: y + Math.floor(i / cols) * CELL_H };
    });
    const h = rows * CELL_H;
    x += w + NET_GAP;
    rowHeight = Math.max(rowHeight, h);
    return { w, h };
  };
  for (const [network, list] of members) {
    const netId = networkId(node, network);
    add({
      group: "nodes",
      data: {
        id: netId,
        parent: hostId(node),
        label: `${network} (${drivers.get(network)}, ${list.length})`,
      },
      classes: "network",
    });
    const shown: { id: string }[] = [];
    if (list.length === 0) {
      // An empty compound is drawn as a plain node: it needs a position of its own.
      shown.push({ id: netId });
    } else if (isExpanded(network, list.length, opts)) {
      for (const c of list) {
        const id = contextId(c.name);
        add({
          group: "nodes",
          data: { id, parent: netId, label: c.name, name: c.name, level: c.level },
          classes: `context level-${c.level} status-${c.status}`,
        });
        drawnAs.set(c.name, id);
        shown.push({ id });
      }
    } else {
      for (const level of LEVELS) {
        const count = list.filter((c) => c.level === level).length;
        if (count === 0) continue;
        const id = groupId(node, network, level);
        add({
          group: "nodes",
          data: { id, parent: netId, label: `${level} × ${count}`, network, level, count },
          classes: `group level-${level}`,
        });
        for (const c of list) if (c.level === level) drawnAs.set(c.name, id);
        shown.push({ id });
      }
    }
    place(shown, Math.max(1, Math.ceil(Math.sqrt(shown.length * 1.6))));
  }
  if (loose.length > 0) {
    const shown = loose.map((c) => {
      const id = contextId(c.name);
      add({
        group: "nodes",
        data: { id, parent: hostId(node), label: c.name, name: c.name, level: c.level },
        classes: `context level-${c.level} status-${c.status}`,
      });
      drawnAs.set(c.name, id);
      return { id };
    });
    place(shown, Math.ceil(Math.sqrt(shown.length)));
  }
  // Other nodes: a host each, with the overlay networks it holds blocks of, joined to the same network here (one edge
  // per network and node: the overlay's VXLAN peering, not its contexts).
  for (const peer of opts.peers ?? []) {
    const id = hostId(peer.name);
    add({
      group: "nodes",
      data: { id, label: `${peer.name} · ${peer.underlay} · ${peer.contexts} contexts` },
      classes: "host peer",
    });
    const shown = peer.networks.map((network) => {
      const netId = networkId(peer.name, network);
      add({ group: "nodes", data: { id: netId, parent: id, label: network }, classes: "network remote" });
      return { id: netId };
    });
    if (shown.length === 0) shown.push({ id });
    place(shown, shown.length);
    for (const network of peer.networks)
      if (members.has(network))
        out.push({
          group: "edges",
          data: {
            id: `edge:${networkId(node, network)}>${networkId(peer.name, network)}`,
            source: networkId(node, network),
            target: networkId(peer.name, network),
            label: "",
          },
          classes: "overlay",
        });
  }
  // Further networks of a context: one edge each, merged per drawn node (a group's members share theirs).
  const edges = new Map<string, { source: string; target: string; count: number }>();
  for (const c of contexts)
    for (const network of c.networks.slice(1)) {
      if (!members.has(network)) continue;
      const source = drawnAs.get(c.name)!;
      const target = networkId(node, network);
      const key = `${source}>${target}`;
      const edge = edges.get(key) ?? { source, target, count: 0 };
      edge.count++;
      edges.set(key, edge);
    }
  for (const [key, e] of edges)
    out.push({
      group: "edges",
      data: { id: `edge:${key}`, source: e.source, target: e.target, label: e.count > 1 ? `${e.count}` : "" },
      classes: "attachment",
    });
  return out;
}
