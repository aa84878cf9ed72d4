/** Routes (RTM_*ROUTE), any table: the table number always travels in RTA_TABLE as well. */
import { invalid } from "../errors.ts";
import { scopeName } from "./addr.ts";
import { KernelError } from "./errors.ts";
import {
  AF_UNSPEC,
  familyNumber,
  familyOfAf,
  type Message,
  type MessageWriter,
  type NetlinkSocket,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  parseAttrs,
  parseCidr,
  parseIp,
} from "./netlink.ts";

const RTM_NEWROUTE = 24;
const RTM_DELROUTE = 25;
const RTM_GETROUTE = 26;
const RTMSG_LEN = 12;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_PREFSRC = 7;
const RTA_MULTIPATH = 9;
const RTA_TABLE = 15;
const RTA_MAX = 32;
const RTNH_F_ONLINK = 4;
export const RT_TABLE_MAIN = 254;
const RTPROT_BOOT = 3;
const RT_SCOPE = { universe: 0, link: 253, host: 254 } as const;
const RT_SCOPE_NOWHERE = 255;
const RTN = { unicast: 1, local: 2, blackhole: 6, unreachable: 7, prohibit: 8 } as const;
const RTN_NAMES: Record<number, string> = {
  1: "unicast",
  2: "local",
  3: "broadcast",
  4: "anycast",
  5: "multicast",
  6: "blackhole",
  7: "unreachable",
  8: "prohibit",
  9: "throw",
  10: "nat",
};

export interface RouteSpec {
  /** CIDR or "default". */
  dst: string;
  family?: 4 | 6;
  gateway?: string;
  dev?: string;
  table?: number;
  scope?: "universe" | "link" | "host";
  protocol?: number;
  metric?: number;
  src?: string;
  onlink?: boolean;
  type?: "unicast" | "blackhole" | "unreachable" | "prohibit" | "local";
}

export interface Route extends RouteSpec {
  family: 4 | 6;
  table: number;
  devIndex?: number;
}

type Verb = "add" | "replace" | "del";

function describe(verb: Verb, r: RouteSpec): string {
  const parts = [`route ${verb} ${r.dst}`];
  if (r.gateway) parts.push(`via ${r.gateway}`);
  if (r.dev) parts.push(`dev ${r.dev}`);
  if (r.table !== undefined) parts.push(`table ${r.table}`);
  return parts.join(" ");
}

/** Checks and encodes a spec; devIndex is resolved by the caller (a request of its own). */
export function routeRequest(
  verb: Verb,
  r: RouteSpec,
  devIndex: number | undefined,
): [string, number, number, (w: MessageWriter) => void] {
  const dst = r.dst === "default" ? undefined : parseCidr(r.dst, "dst");
  const gateway = r.gateway === undefined ? undefined : parseIp(r.gateway, "gateway");
  const src = r.src === undefined ? undefined : parseIp(r.src, "src");
  const family = r.family ?? dst?.family ?? gateway?.family ?? 4;
  for (const [field, f] of [
    ["dst", dst?.family],
    ["gateway", gateway?.family],
    ["src", src?.family],
  ] as const)
    if (f !== undefined && f !== family) throw invalid(field, `is IPv${f} in an IPv${family} route`);
  const table = r.table ?? RT_TABLE_MAIN;
  if (!Number.isInteger(table) || table < 1 || table > 0xffffffff)
    throw invalid("table", `${table} is not a table id`);
  const type = RTN[r.type ?? "unicast"];
  if (type === undefined) throw invalid("type", `"${r.type}" is not a route type`);
  if (r.scope !== undefined && RT_SCOPE[r.scope] === undefined)
    throw invalid("scope", `"${r.scope}" is not a scope`);
  // iproute2's defaults: a route without a gateway is link-scoped, local routes host-scoped; a delete
  // without a scope matches any (RT_SCOPE_NOWHERE) and without a type/protocol matches any too.
  let scope: number;
  if (r.scope !== undefined) scope = RT_SCOPE[r.scope];
  else if (verb === "del") scope = RT_SCOPE_NOWHERE;
  else if (type === RTN.local) scope = RT_SCOPE.host;
  else if (type === RTN.unicast && !gateway) scope = RT_SCOPE.link;
  else scope = RT_SCOPE.universe;
  const protocol = r.protocol ?? (verb === "del" ? 0 : RTPROT_BOOT);
  const msgType = r.type === undefined && verb === "del" ? 0 : type;
  const flags =
    verb === "add" ? NLM_F_CREATE | NLM_F_EXCL : verb === "replace" ? NLM_F_CREATE | NLM_F_REPLACE : 0;
  const build = (w: MessageWriter): void => {
    w.u8(familyNumber(family))
      .u8(dst?.prefix ?? 0)
      .u8(0)
      .u8(0)
      // rtm_table is a u8: ids above 255 only fit in RTA_TABLE (RT_TABLE_UNSPEC here then).
      .u8(table < 256 ? table : 0)
      .u8(protocol)
      .u8(scope)
      .u8(msgType)
      .u32(r.onlink ? RTNH_F_ONLINK : 0);
    w.attrU32(RTA_TABLE, table);
    if (dst) w.attrBytes(RTA_DST, dst.bytes);
    if (gateway) w.attrBytes(RTA_GATEWAY, gateway.bytes);
    if (devIndex !== undefined) w.attrU32(RTA_OIF, devIndex);
    if (r.metric !== undefined) w.attrU32(RTA_PRIORITY, r.metric);
    if (src) w.attrBytes(RTA_PREFSRC, src.bytes);
  };
  return [describe(verb, r), verb === "del" ? RTM_DELROUTE : RTM_NEWROUTE, flags, build];
}

export function routeChange(
  sock: NetlinkSocket,
  verb: Verb,
  r: RouteSpec,
  devIndex: number | undefined,
): void {
  const [op, type, flags, build] = routeRequest(verb, r, devIndex);
  sock.ack(op, type, flags, build);
}

export function parseRoute(m: Message, names: Map<number, string>): Route | undefined {
  if (m.type !== RTM_NEWROUTE) return undefined;
  const { buf, offset } = m;
  const family = familyOfAf(buf[offset] ?? 0);
  if (!family) return undefined;
  const dstLen = buf[offset + 1] ?? 0;
  const a = parseAttrs(buf, offset + RTMSG_LEN, m.end, RTA_MAX);
  const dst = a.ip(RTA_DST);
  const route: Route = {
    family,
    dst: dst === undefined ? (dstLen === 0 ? "default" : "") : `${dst}/${dstLen}`,
    table: a.u32(RTA_TABLE) ?? buf[offset + 4] ?? 0,
    protocol: buf[offset + 5] ?? 0,
  };
  const scope = buf[offset + 6] ?? 0;
  const scopeText = scope === 0 ? "universe" : scopeName(scope);
  if (scopeText === "universe" || scopeText === "link" || scopeText === "host") route.scope = scopeText;
  const type = RTN_NAMES[buf[offset + 7] ?? 0];
  if (
    type === "unicast" ||
    type === "blackhole" ||
    type === "unreachable" ||
    type === "prohibit" ||
    type === "local"
  )
    route.type = type;
  if (buf.readUInt32LE(offset + 8) & RTNH_F_ONLINK) route.onlink = true;
  let oif = a.u32(RTA_OIF);
  let gateway = a.ip(RTA_GATEWAY);
  const mp = a.offset(RTA_MULTIPATH);
  if (mp !== undefined && a.len(RTA_MULTIPATH) >= 8) {
    // rtnexthop {len u16, flags u8, hops u8, ifindex i32} then attributes: report the first hop.
    const nhLen = buf.readUInt16LE(mp);
    oif ??= buf.readInt32LE(mp + 4);
    gateway ??= parseAttrs(buf, mp + 8, mp + nhLen, RTA_GATEWAY).ip(RTA_GATEWAY);
  }
  if (gateway !== undefined) route.gateway = gateway;
  if (oif !== undefined) {
    route.devIndex = oif;
    const name = names.get(oif);
    if (name !== undefined) route.dev = name;
  }
  const metric = a.u32(RTA_PRIORITY);
  if (metric !== undefined) route.metric = metric;
  const src = a.ip(RTA_PREFSRC);
  if (src !== undefined) route.src = src;
  return route;
}

/** struct rtmsg with only the family and the destination's prefix length set (the rest: any, for a query). */
function writeRtmsgQuery(w: MessageWriter, family: number, dstLen: number): MessageWriter {
  return w.u8(family).u8(dstLen).u8(0).u8(0).u8(0).u8(0).u8(0).u8(0).u32(0);
}

function dumpHeader(family: 4 | 6 | undefined): (w: MessageWriter) => void {
  return (w) => writeRtmsgQuery(w, family ? familyNumber(family) : AF_UNSPEC, 0);
}

export function routeList(
  sock: NetlinkSocket,
  names: Map<number, string>,
  filter: { family?: 4 | 6; table?: number; oif?: number } = {},
): Route[] {
  const parse = (m: Message) => {
    const r = parseRoute(m, names);
    if (!r) return undefined;
    if (filter.family !== undefined && r.family !== filter.family) return undefined;
    if (filter.table !== undefined && r.table !== filter.table) return undefined;
    if (filter.oif !== undefined && r.devIndex !== filter.oif) return undefined;
    return r;
  };
  if (filter.table === undefined && filter.oif === undefined)
    return sock.dump("route list", RTM_GETROUTE, dumpHeader(filter.family), parse);
  return tableDump(sock, filter.family, filter.table, parse, filter.oif);
}

/**
 * `ip route get ADDR`: the route the kernel would take to one address, with the source address it would pick
 * (RTA_PREFSRC). One RTM_GETROUTE without NLM_F_DUMP: the kernel answers with one RTM_NEWROUTE, then the ack.
 * Undefined when it has none (ENETUNREACH, EHOSTUNREACH).
 */
export function routeGet(
  sock: NetlinkSocket,
  names: Map<number, string>,
  address: string,
): Route | undefined {
  const dst = parseIp(address, "address");
  let found: Route | undefined;
  try {
    sock.ack(
      `route get ${address}`,
      RTM_GETROUTE,
      0,
      (w) => {
        writeRtmsgQuery(w, familyNumber(dst.family), dst.family === 4 ? 32 : 128).attrBytes(
          RTA_DST,
          dst.bytes,
        );
      },
      (m) => {
        found ??= parseRoute(m, names);
      },
    );
  } catch (err) {
    if (err instanceof KernelError && (err.errnoName === "ENETUNREACH" || err.errnoName === "EHOSTUNREACH"))
      return undefined;
    throw err;
  }
  return found;
}

/** Whether the table holds any route of the family, read without parsing (or naming the devices of) any. */
export function tableHasRoutes(sock: NetlinkSocket, family: 4 | 6, table: number): boolean {
  return tableDump(sock, family, table, (m) => (m.type === RTM_NEWROUTE ? true : undefined)).length > 0;
}

/**
 * One table of thousands (an l3 context's), or the routes through one device: the kernel walks only what the filter
 * selects. A table that holds no route does not exist for it (ENOENT).
 */
function tableDump<T>(
  sock: NetlinkSocket,
  family: 4 | 6 | undefined,
  table: number | undefined,
  parse: (m: Message) => T | undefined,
  oif?: number,
): T[] {
  const what = [table === undefined ? "" : ` table ${table}`, oif === undefined ? "" : ` oif ${oif}`].join(
    "",
  );
  try {
    return sock.filteredDump(
      `route list${what}`,
      RTM_GETROUTE,
      (w) => {
        dumpHeader(family)(w);
        if (table !== undefined) w.attrU32(RTA_TABLE, table);
        if (oif !== undefined) w.attrU32(RTA_OIF, oif);
      },
      parse,
    );
  } catch (err) {
    if (err instanceof KernelError && err.errnoName === "ENOENT") return [];
    throw err;
  }
}
