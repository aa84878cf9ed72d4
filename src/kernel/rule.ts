/** Policy routing rules (RTM_*RULE): `from/to/fwmark/iif/oif ... lookup TABLE` with a priority. */
import { invalid } from "../errors.ts";
import { checkIfname } from "./link.ts";
import {
  type Attrs,
  familyNumber,
  familyOfAf,
  type Message,
  type MessageWriter,
  type NetlinkSocket,
  NLM_F_CREATE,
  NLM_F_EXCL,
  parseAttrs,
  parseCidr,
} from "./netlink.ts";

const RTM_NEWRULE = 32;
const RTM_DELRULE = 33;
const RTM_GETRULE = 34;
const FIB_RULE_HDR_LEN = 12;
const FRA_DST = 1;
const FRA_SRC = 2;
const FRA_IIFNAME = 3;
const FRA_PRIORITY = 6;
const FRA_FWMARK = 10;
const FRA_TABLE = 15;
const FRA_FWMASK = 16;
const FRA_OIFNAME = 17;
const FRA_MAX = 32;
const FR_ACT_TO_TBL = 1;

export interface RuleSpec {
  family: 4 | 6;
  priority?: number;
  from?: string;
  to?: string;
  fwmark?: number;
  fwmask?: number;
  table: number;
  iif?: string;
  oif?: string;
}

export interface Rule extends RuleSpec {
  priority: number;
}

function describe(verb: string, r: RuleSpec): string {
  const parts = [`rule ${verb} -${r.family}`];
  if (r.priority !== undefined) parts.push(`pref ${r.priority}`);
  if (r.from) parts.push(`from ${r.from}`);
  if (r.to) parts.push(`to ${r.to}`);
  if (r.fwmark !== undefined) parts.push(`fwmark ${r.fwmark}${r.fwmask !== undefined ? `/${r.fwmask}` : ""}`);
  if (r.iif) parts.push(`iif ${r.iif}`);
  if (r.oif) parts.push(`oif ${r.oif}`);
  parts.push(`table ${r.table}`);
  return parts.join(" ");
}

function u32(v: number | undefined, field: string): void {
  if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0xffffffff))
    throw invalid(field, `${v} is not a u32`);
}

function ruleRequest(r: RuleSpec): (w: MessageWriter) => void {
  if (r.family !== 4 && r.family !== 6) throw invalid("family", `${String(r.family)} is not 4 or 6`);
  const from = r.from === undefined ? undefined : parseCidr(r.from, "from");
  const to = r.to === undefined ? undefined : parseCidr(r.to, "to");
  for (const [field, c] of [
    ["from", from],
    ["to", to],
  ] as const)
    if (c && c.family !== r.family) throw invalid(field, `is IPv${c.family} in an IPv${r.family} rule`);
  u32(r.priority, "priority");
  u32(r.fwmark, "fwmark");
  u32(r.fwmask, "fwmask");
  u32(r.table, "table");
  if (r.iif !== undefined) checkIfname(r.iif, "iif");
  if (r.oif !== undefined) checkIfname(r.oif, "oif");
  return (w) => {
    w.u8(familyNumber(r.family))
      .u8(to?.prefix ?? 0)
      .u8(from?.prefix ?? 0)
      .u8(0)
      // The header's table is a u8; FRA_TABLE carries the full id.
      .u8(r.table < 256 ? r.table : 0)
      .u8(0)
      .u8(0)
      .u8(FR_ACT_TO_TBL)
      .u32(0);
    w.attrU32(FRA_TABLE, r.table);
    if (r.priority !== undefined) w.attrU32(FRA_PRIORITY, r.priority);
    if (from) w.attrBytes(FRA_SRC, from.bytes);
    if (to) w.attrBytes(FRA_DST, to.bytes);
    if (r.fwmark !== undefined) w.attrU32(FRA_FWMARK, r.fwmark);
    if (r.fwmask !== undefined) w.attrU32(FRA_FWMASK, r.fwmask);
    if (r.iif !== undefined) w.attrStr(FRA_IIFNAME, r.iif);
    if (r.oif !== undefined) w.attrStr(FRA_OIFNAME, r.oif);
  };
}

/** NLM_F_EXCL makes the kernel refuse an identical rule with EEXIST instead of stacking a duplicate. */
export function ruleAdd(sock: NetlinkSocket, r: RuleSpec): void {
  sock.ack(describe("add", r), RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, ruleRequest(r));
}

export function ruleDel(sock: NetlinkSocket, r: RuleSpec): void {
  sock.ack(describe("del", r), RTM_DELRULE, 0, ruleRequest(r));
}

export function parseRule(m: Message): Rule | undefined {
  if (m.type !== RTM_NEWRULE) return undefined;
  const { buf, offset } = m;
  const family = familyOfAf(buf[offset] ?? 0);
  if (!family) return undefined;
  const a = parseAttrs(buf, offset + FIB_RULE_HDR_LEN, m.end, FRA_MAX);
  const rule: Rule = {
    family,
    priority: a.u32(FRA_PRIORITY) ?? 0,
    table: tableOf(m, a),
  };
  const src = a.ip(FRA_SRC);
  if (src !== undefined) rule.from = `${src}/${buf[offset + 2]}`;
  const dst = a.ip(FRA_DST);
  if (dst !== undefined) rule.to = `${dst}/${buf[offset + 1]}`;
  const mark = a.u32(FRA_FWMARK);
  if (mark !== undefined) rule.fwmark = mark;
  const mask = a.u32(FRA_FWMASK);
  if (mask !== undefined) rule.fwmask = mask;
  const iif = a.str(FRA_IIFNAME);
  if (iif !== undefined) rule.iif = iif;
  const oif = a.str(FRA_OIFNAME);
  if (oif !== undefined) rule.oif = oif;
  return rule;
}

/** FRA_TABLE carries the full id; the header's u8 only tables below 256. */
function tableOf(m: Message, a: Attrs): number {
  return a.u32(FRA_TABLE) ?? m.buf[m.offset + 4] ?? 0;
}

function dumpHeader(family: 4 | 6): (w: MessageWriter) => void {
  return (w) => {
    w.u8(familyNumber(family)).u8(0).u8(0).u8(0).u8(0).u8(0).u8(0).u8(0).u32(0);
  };
}

export function ruleList(sock: NetlinkSocket, family: 4 | 6): Rule[] {
  return sock.dump(`rule list -${family}`, RTM_GETRULE, dumpHeader(family), parseRule);
}

/** The table of every rule of the family, and nothing else of them: picking a free table needs no more. */
export function ruleTables(sock: NetlinkSocket, family: 4 | 6): Set<number> {
  const tables = sock.dump(`rule list -${family}`, RTM_GETRULE, dumpHeader(family), (m) =>
    m.type === RTM_NEWRULE
      ? tableOf(m, parseAttrs(m.buf, m.offset + FIB_RULE_HDR_LEN, m.end, FRA_TABLE))
      : undefined,
  );
  return new Set(tables);
}
