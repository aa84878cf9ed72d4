/**
 * policy-sync compiles only the touched contexts' entries again (recompileContexts) while the policies and networks
 * stay the same: here, over random scenes and random changes, that always equals compiling everything.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type CompileInput,
  compilePolicies,
  type PolicyContext,
  recompileContexts,
} from "../../src/engine/policy-compile.ts";
import { type PolicyRecord, policyRecordOf } from "../../src/model/policy.ts";
import type { NetworkRecord } from "../../src/model/records.ts";
import { mulberry32 as rng } from "../reliability/prng.ts";

const NETWORKS: NetworkRecord[] = [
  {
    name: "a",
    driver: "bridge",
    subnets: [{ cidr: "10.1.0.0/24", gateway: "10.1.0.1" }],
    nat: false,
    internal: false,
    mtu: 1500,
    options: {},
  },
  {
    name: "b",
    driver: "bridge",
    subnets: [{ cidr: "10.2.0.0/24", gateway: "10.2.0.1" }],
    nat: false,
    internal: false,
    mtu: 1500,
    options: { isolate: true },
  },
  {
    name: "c",
    driver: "bridge",
    subnets: [
      { cidr: "10.3.0.0/24", gateway: "10.3.0.1" },
      { cidr: "fd03::/64", gateway: "fd03::1" },
    ],
    nat: false,
    internal: false,
    mtu: 1500,
    options: { defaultDeny: true },
  },
];
const SELECTORS = [
  "c0",
  "c3",
  "c7",
  "app=web",
  "app=db,tier=1",
  "network:a",
  "network:c",
  "host",
  "world",
  "10.1.0.0/25",
  "10.3.0.5",
  "0.0.0.0/0",
  "fd03::/64",
];

function scene(next: () => number) {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const policies: PolicyRecord[] = Array.from({ length: 1 + Math.floor(next() * 12) }, (_, i) =>
    policyRecordOf({
      name: `p${i}`,
      to: pick(SELECTORS),
      from: pick(SELECTORS),
      ports: next() < 0.3 ? [] : [`${1 + Math.floor(next() * 3)}/${pick(["tcp", "udp"])}`],
      egress: next() < 0.3,
    }),
  );
  let host = 2;
  const context = (name: string): PolicyContext => {
    const nets = NETWORKS.filter(() => next() < 0.5);
    const labels: Record<string, string> = {};
    if (next() < 0.5) labels.app = pick(["web", "db"]);
    if (next() < 0.5) labels.tier = "1";
    return {
      name,
      labels,
      attachments: nets.map((n) => ({
        network: n.name,
        addresses: [
          `${n.subnets[0]!.cidr.split(".").slice(0, 3).join(".")}.${host++}/24`,
          ...(n.name === "c" ? [`fd03::${(host++).toString(16)}/64`] : []),
        ],
      })),
    };
  };
  return { policies, context };
}

test("recompiling the touched contexts equals compiling everything, over 300 random scenes and changes", () => {
  for (let seed = 1; seed <= 300; seed++) {
    const next = rng(seed);
    const { policies, context } = scene(next);
    let contexts = Array.from({ length: Math.floor(next() * 10) }, (_, i) => context(`c${i}`));
    const input = (cs: PolicyContext[]): CompileInput => ({ policies, contexts: cs, networks: NETWORKS });
    let tables = compilePolicies(input(contexts));
    for (let step = 0; step < 6; step++) {
      const changed = new Set<string>();
      const roll = next();
      if (roll < 0.4 || contexts.length === 0) {
        const made = context(`n${seed}-${step}`);
        contexts = [...contexts, made];
        changed.add(made.name);
      } else if (roll < 0.7) {
        const gone = contexts[Math.floor(next() * contexts.length)]!;
        contexts = contexts.filter((c) => c !== gone);
        changed.add(gone.name);
      } else {
        const i = Math.floor(next() * contexts.length);
        const again = { ...context(contexts[i]!.name) };
        contexts = contexts.map((c, k) => (k === i ? again : c));
        changed.add(again.name);
      }
      const whole = compilePolicies(input(contexts));
      const partly = recompileContexts(tables, input(contexts), changed);
      assert.ok(partly, `seed ${seed} step ${step}: addresses are unique, so it recompiles`);
      assert.deepEqual(partly, whole, `seed ${seed} step ${step}`);
      tables = whole;
    }
  }
});
