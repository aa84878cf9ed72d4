/**
 * Hostile input: a seeded generator mutates one field of a valid network or context request into something bad
 * (wrong types, unicode, huge strings, path traversal, negative and huge numbers, taken addresses, overlaps ...).
 * Every case must be refused with a NetctxError whose message is one line, and leave the state store and the
 * kernel exactly as they were. Most cases go through the library (createNetwork / createContext, which parse
 * with the zod schemas), a sample through the real CLI (one line on stderr starting "error:", non-zero exit).
 * Apply files (truncated, duplicate keys, wrong types, dangling references ...) must be refused naming the field, and
 * CNI configs and environments (hostile CNI_NETNS, huge CNI_ARGS, unknown keys ...) with the spec's JSON error.
 * NETCTX_FUZZ_SEED, NETCTX_FUZZ_CASES (library, default 2000), NETCTX_FUZZ_CLI (default 100), NETCTX_FUZZ_APPLY
 * (default 600), NETCTX_FUZZ_CNI (default 600) and NETCTX_FUZZ_ENTRY (default 20 + 20) tune it.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { stringify as yamlStringify } from "yaml";
import { readSceneFile } from "../../src/cli/apply.ts";
import { runCni } from "../../src/cni/run.ts";
import { applyScene } from "../../src/engine/apply.ts";
import { createContext } from "../../src/engine/contexts.ts";
import { createNetwork } from "../../src/engine/networks.ts";
import { NetctxError } from "../../src/errors.ts";
import { Host } from "../../src/host.ts";
import { netctx, netctxOk } from "../utils/cli.ts";
import { cniRaw } from "../utils/cni-runtime.ts";
import { testConfig } from "../utils/config.ts";
import { addrs, kernelSnapshot } from "../utils/kernel-oracle.ts";
import { addNetns, netnsPath } from "../utils/netns.ts";
import { mulberry32 } from "./prng.ts";

const SEED = Number(process.env.NETCTX_FUZZ_SEED ?? 7);
const CASES = Number(process.env.NETCTX_FUZZ_CASES ?? 2000);
const CLI_CASES = Number(process.env.NETCTX_FUZZ_CLI ?? 100);
const APPLY_CASES = Number(process.env.NETCTX_FUZZ_APPLY ?? 600);
const CNI_CASES = Number(process.env.NETCTX_FUZZ_CNI ?? 600);
/** Apply files through `netctx apply` and calls of the installed plugin, each. */
const ENTRY_CASES = Number(process.env.NETCTX_FUZZ_ENTRY ?? 20);
/** The `ip netns add` netns CNI cases point at, as a runtime's would be. */
const RUNTIME_NETNS = "fzrt";

type Rand = () => number;
type Json = string | number | boolean | null | Json[] | { [k: string]: Json };

interface Case {
  kind: "network" | "context";
  input: Record<string, Json>;
  /** Which field was made bad, for the failure message. */
  what: string;
}

const pick = <T>(rand: Rand, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

function randomString(rand: Rand, alphabet: string, min: number, max: number): string {
  const chars = [...alphabet];
  const n = min + Math.floor(rand() * (max - min + 1));
  return Array.from({ length: n }, () => pick(rand, chars)).join("");
}

const VALID_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_";
const NASTY = [
  "",
  ".",
  "..",
  "../etc",
  "../../run/netns/x",
  "a/b",
  "/abs",
  "a b",
  "A",
  "Upper",
  "-lead",
  "_lead",
  "x\n",
  "x\ty",
  'q"uote',
  "back\\slash",
  "semi;colon",
  "$(reboot)",
  "`id`",
  "héllo",
  "名前",
  "emoji😀",
  "\u202eevil",
  "ｆｕｌｌ",
  "x\u0000y",
  "%00",

  "*",
];
const WRONG_TYPES: Json[] = [0, -1, 1e308, true, null, [], {}, ["a"], { a: 1 }];

/** A name no rule accepts: forbidden characters, too long for its interface, or a wrong type. */
function badName(rand: Rand, forContext: boolean): Json {
  const r = rand();
  if (r < 0.45) return pick(rand, NASTY);
  // Too long: contexts make nc-NAME (15 bytes max), networks nc-NAME for their bridge.
  if (r < 0.65) return randomString(rand, "abcdefghijklmnopqrstuvwxyz", forContext ? 13 : 13, 200);
  if (r < 0.75) return "a".repeat(1000 + Math.floor(rand() * 100_000));
  if (r < 0.9)
    return `${randomString(rand, VALID_NAME_CHARS, 0, 5)}${pick(rand, ["/", " ", "É", "..", ":", "@", "\u00a0"])}${randomString(rand, VALID_NAME_CHARS, 0, 5)}`;
  return pick(rand, WRONG_TYPES);
}

const BAD_CIDRS = [
  "",
  "banana",
  "10.0.0.0",
  "10.0.0.0/33",
  "10.0.0.0/-1",
  "10.0.0.0/+8",
  "10.0.0.0/ 24",
  "10.0.0.0/24/1",
  "10.0.0.1/24",
  "256.0.0.0/8",
  "10.0.0.0.0/8",
  "1.2.3/24",
  "0x0a.0.0.0/8",
  "010.0.0.0/8x",
  "１0.0.0.0/8",
  "::/129",
  "fd00::1/64",
  "fd00:::/64",
  "fd00::g/64",
  "fe80::/64%eth0",
  "10.70.0.0/16",
  "10.70.0.128/25",
  "10.0.0.0/31",
  "10.0.0.0/32",
  "fd70::/64",
  "../10.0.0.0/8",
  "10.0.0.0/99999999999999999999",
  "10.0.0.0/24\n",
  "10.0.0.0\n/24",
  "\u202e10.0.0.0/24",
];

function badCidr(rand: Rand): Json {
  const r = rand();
  if (r < 0.7) return pick(rand, BAD_CIDRS);
  if (r < 0.8) return `${Math.floor(rand() * 1000) + 256}.${Math.floor(rand() * 256)}.0.0/16`;
  if (r < 0.9) return `10.${Math.floor(rand() * 256)}.0.0/${33 + Math.floor(rand() * 1000)}`;
  return "9".repeat(10_000 + Math.floor(rand() * 50_000));
}

const BAD_MACS = [
  "",
  "zz:11:22:33:44:55",
  "00:11:22:33:44",
  "00:11:22:33:44:55:66",
  "01:00:5e:00:00:01",
  "ff:ff:ff:ff:ff:ff",
  "00:00:00:00:00:00",
  "0011.2233.4455",
  "00-11-22-33-44-55",
  "02:42:ac:11:00:0２",
  " 02:42:ac:11:00:02",
  "02:42:ac:11:00:02\n",
];

const BAD_IPS = [
  "10.70.0.0",
  "10.70.0.1",
  "10.70.0.255",
  "10.70.0.300",
  "10.71.0.5",
  "10.70.0.20",
  "fd70::",
  "fd70::1",
  "fd70::20:xyz",
  "fe80::1%eth0",
  "::ffff:10.70.0.9/24",
  "",
  "localhost",
  "10.70.0.5/24",
  "1e3",
  "10.70.0.5 ",
  "10.70.0.5\n",
  "fd70::5\r\n",
];

const BAD_MTUS: Json[] = [
  -1,
  0,
  1,
  67,
  65536,
  1e9,
  2 ** 53,
  -(2 ** 53),
  1500.5,
  Number.NaN as unknown as Json,
  "1500",
  null,
  true,
];

function badNetwork(rand: Rand): Case {
  const input: Record<string, Json> = {
    name: `fn${Math.floor(rand() * 1e6)}`.slice(0, 10),
    driver: "bridge",
    subnets: [`10.${100 + Math.floor(rand() * 100)}.${Math.floor(rand() * 256)}.0/24`],
  };
  const field = pick(rand, [
    "name",
    "driver",
    "subnets",
    "gateways",
    "mtu",
    "nat",
    "extra",
    "options",
    "whole",
  ]);
  switch (field) {
    case "name":
      input["name"] = badName(rand, false);
      break;
    case "driver":
      input["driver"] = pick(rand, [
        "",
        "warp",
        "BRIDGE",
        "bridge ",
        "../bridge",
        "brïdge",
        5,
        null,
        ["bridge"],
      ]);
      break;
    case "subnets": {
      const r = rand();
      if (r < 0.7) input["subnets"] = [badCidr(rand)];
      else if (r < 0.8) input["subnets"] = [];
      else if (r < 0.9) input["subnets"] = ["10.150.0.0/24", "10.150.0.128/25"];
      else input["subnets"] = pick(rand, ["10.150.0.0/24", 5, null, [5], [null], {}]);
      break;
    }
    case "gateways": {
      const sub = String((input["subnets"] as string[])[0]);
      const base = sub.split(".").slice(0, 3).join(".");
      input["gateways"] = pick(rand, [
        [`${base}.0`],
        [`${base}.255`],
        ["10.99.99.1"],
        [`${base}.1`, `${base}.2`],
        ["garbage"],
        ["fd70::1"],
        [5],
        `${base}.1`,
      ]);
      break;
    }
    case "mtu":
      input["mtu"] = pick(rand, BAD_MTUS);
      break;
    case "nat":
      input[pick(rand, ["nat", "internal", "antispoof"])] = pick(rand, ["yes", 1, 0, "true", null, []]);
      break;
    case "extra":
      input[pick(rand, ["colour", "__proto__x", "subnet", "Name", "names"])] = "x";
      break;
    case "options":
      input["options"] = pick(rand, ["x", 5, [], null, true]);
      break;
    default:
      return { kind: "network", input: { oops: pick(rand, WRONG_TYPES) }, what: "whole" };
  }
  return { kind: "network", input, what: field };
}

function badContext(rand: Rand): Case {
  const input: Record<string, Json> = {
    name: `fc${Math.floor(rand() * 1e6)}`.slice(0, 10),
    level: "l2",
    networks: ["fz"],
  };
  const field = pick(rand, [
    "name",
    "level",
    "networks",
    "ips",
    "mac",
    "ifnames",
    "routes",
    "extra",
    "whole",
  ]);
  switch (field) {
    case "name":
      input["name"] = badName(rand, true);
      break;
    case "level":
      input["level"] = pick(rand, ["", "l4", "L2", "l2 ", "l２", "socket/../l2", 2, null, ["l2"]]);
      break;
    case "networks":
      input["networks"] = pick(rand, [
        [],
        ["nowhere"],
        ["fz", "fz"],
        ["../fz"],
        ["FZ"],
        "fz",
        [5],
        [null],
        ["fz", "x".repeat(5000)],
      ]);
      break;
    case "ips":
      input["ips"] =
        rand() < 0.85 ? [pick(rand, BAD_IPS)] : pick(rand, [["10.70.0.9", "10.70.0.10"], "10.70.0.9", [9]]);
      break;
    case "mac":
      input["mac"] =
        rand() < 0.85
          ? pick(rand, BAD_MACS)
          : pick(
              rand,
              WRONG_TYPES.filter((v) => typeof v !== "string"),
            );
      break;
    case "ifnames":
      input["ifnames"] = pick(rand, [
        ["averyveryverylong0"],
        ["a/b"],
        ["a b"],
        ["."],
        [".."],
        [""],
        ["eth0:1"],
        ["eth0\n"],
        ["ëth0"],
        ["x".repeat(100_000)],
        "eth0",
      ]);
      if (rand() < 0.2) {
        input["networks"] = ["fz", "fr"];
        input["ifnames"] = ["eth0", "eth0"];
      }
      break;
    case "routes":
      // Routes belong to l3 contexts only; on l2 any route is refused, garbage or not.
      input["routes"] = pick(rand, [
        ["default via 10.70.0.1"],
        ["garbage"],
        ["10.0.0.0/8 via 1.2.3.4 metric -1"],
        [""],
        "x",
      ]);
      break;
    case "extra":
      input[pick(rand, ["colour", "network", "ip", "Level", "spec"])] = "x";
      break;
    default:
      return { kind: "context", input: { name: pick(rand, WRONG_TYPES) }, what: "whole" };
  }
  return { kind: "context", input, what: field };
}

function generate(rand: Rand): Case {
  return rand() < 0.5 ? badNetwork(rand) : badContext(rand);
}

let host: Host;

function stateDump(): string {
  return JSON.stringify({
    networks: host.store.listNetworks(),
    contexts: host.store.listContexts(),
    leases: host.store.leases(),
  });
}

/** The host's kernel view plus the links inside the runtime netns CNI cases point at. */
function fullSnapshot(): string {
  return `${kernelSnapshot()}\n${JSON.stringify(addrs(netnsPath(RUNTIME_NETNS)))}`;
}

function show(c: Case): string {
  const text = JSON.stringify(c.input);
  return `${c.kind} ${c.what}: ${text.length > 200 ? `${text.slice(0, 200)}...` : text}`;
}

before(() => {
  netctxOk(
    "network",
    "create",
    "fz",
    "--driver",
    "bridge",
    "--subnet",
    "10.70.0.0/24",
    "--subnet",
    "fd70::/64",
  );
  netctxOk("network", "create", "fr", "--driver", "routed", "--subnet", "10.72.0.0/24");
  netctxOk("create", "taken", "--level", "l2", "--network", "fz", "--ip", "10.70.0.20");
  addNetns(RUNTIME_NETNS);
  host = Host.open(testConfig());
});

after(() => host.close());

test(`${CASES} generated bad inputs through the library are refused with one line and change nothing`, () => {
  const rand = mulberry32(SEED);
  const started = Date.now();
  let kernelBefore = kernelSnapshot();
  const stateBefore = stateDump();
  const codes = new Map<string, number>();
  for (let i = 0; i < CASES; i++) {
    const c = generate(rand);
    let error: unknown;
    try {
      if (c.kind === "network") createNetwork(host, c.input);
      else createContext(host, c.input);
    } catch (err) {
      error = err;
    }
    assert.ok(error !== undefined, `case ${i} was accepted: ${show(c)}`);
    assert.ok(error instanceof NetctxError, `case ${i} threw ${String(error)}: ${show(c)}`);
    assert.ok(!error.message.includes("\n"), `case ${i}: more than one line: ${show(c)}`);
    assert.ok(
      error.message.length < 400,
      `case ${i}: a ${error.message.length}-character message: ${show(c)}`,
    );
    codes.set(error.code, (codes.get(error.code) ?? 0) + 1);
    assert.equal(stateDump(), stateBefore, `case ${i} changed the state: ${show(c)}`);
    // The kernel listing costs ~50 ms: compare every 50 cases (a change would still be there) and at the end.
    if (i % 50 === 49 || i === CASES - 1) {
      const now = kernelSnapshot();
      assert.equal(now, kernelBefore, `the kernel changed by case ${i - 49}..${i}`);
      kernelBefore = now;
    }
  }
  console.log(
    `fuzz (library): seed ${SEED}, ${CASES} cases, ${JSON.stringify(Object.fromEntries(codes))}, ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
});

/** The CLI form of a case, when every value is a string the CLI can express; undefined otherwise. */
function argvOf(c: Case): string[] | undefined {
  const s = (v: Json | undefined) => (typeof v === "string" && !v.includes("\u0000") ? v : undefined);
  const list = (v: Json | undefined) =>
    Array.isArray(v) && v.every((x) => s(x) !== undefined) ? (v as string[]) : undefined;
  const name = s(c.input["name"]);
  if (
    name === undefined ||
    Object.keys(c.input).some(
      (k) =>
        ![
          "name",
          "driver",
          "subnets",
          "gateways",
          "mtu",
          "level",
          "networks",
          "ips",
          "mac",
          "ifnames",
          "routes",
        ].includes(k),
    )
  )
    return undefined;
  if (c.kind === "network") {
    const driver = s(c.input["driver"]);
    const subnets = list(c.input["subnets"]);
    if (driver === undefined || subnets === undefined) return undefined;
    const argv = ["network", "create", name, "--driver", driver, ...subnets.flatMap((x) => ["--subnet", x])];
    if (c.input["gateways"] !== undefined) {
      const g = list(c.input["gateways"]);
      if (!g) return undefined;
      argv.push(...g.flatMap((x) => ["--gateway", x]));
    }
    if (c.input["mtu"] !== undefined) {
      const m = c.input["mtu"];
      if (typeof m !== "number" || !Number.isFinite(m)) return undefined;
      argv.push(`--mtu=${m}`);
    }
    return argv;
  }
  const level = s(c.input["level"]);
  const networks = list(c.input["networks"]);
  if (level === undefined || networks === undefined) return undefined;
  const argv = ["create", name, "--level", level, ...networks.flatMap((x) => ["--network", x])];
  for (const [key, flag] of [
    ["ips", "--ip"],
    ["ifnames", "--ifname"],
    ["routes", "--route"],
  ] as const) {
    if (c.input[key] === undefined) continue;
    const l = list(c.input[key]);
    if (!l) return undefined;
    argv.push(...l.map((x) => `${flag}=${x}`));
  }
  if (c.input["mac"] !== undefined) {
    const m = s(c.input["mac"]);
    if (m === undefined) return undefined;
    argv.push(`--mac=${m}`);
  }
  return argv;
}

const CLI_EXTRA: string[][] = [
  ["create"],
  ["network", "create"],
  ["create", "x", "--network", "fz"],
  ["create", "x", "--level", "l2", "--network", "fz", "--colour", "red"],
  ["network", "create", "x", "--driver", "bridge", "--subnet", "10.1.0.0/24", "--nat", "--internal"],
  ["network", "create", "x", "--driver", "bridge", "--subnet", "10.1.0.0/24", "--mtu", "-5"],
  [
    "network",
    "create",
    "x",
    "--driver",
    "bridge",
    "--subnet",
    "10.1.0.0/24",
    "--mtu",
    "99999999999999999999",
  ],
  ["inspect", "../../etc/passwd"],
  ["network", "inspect", "名前"],
  ["exec", "ghost", "--", "true"],
  ["frobnicate"],
];

test(`a sample of bad inputs through the CLI: one line "error: ...", non-zero exit, nothing changed`, () => {
  const rand = mulberry32(SEED + 1);
  const started = Date.now();
  const kernelBefore = kernelSnapshot();
  const stateBefore = stateDump();
  let ran = 0;
  // What the sample covered: each case's kind and bad field, with the field the CLI's refusal named.
  const covered = new Map<string, number>();
  const run = (argv: string[], label: string, kind: string) => {
    const r = netctx(...argv);
    ran++;
    assert.notEqual(r.code, 0, `${label} exited 0`);
    assert.match(r.stderr, /^error: [^\n]*\n$/, `${label}: stderr ${JSON.stringify(r.stderr.slice(0, 300))}`);
    assert.equal(r.stdout, "", `${label}: printed ${r.stdout}`);
    const key = `${kind}>${/^error: ([\w-]+):/.exec(r.stderr)?.[1] ?? "-"}`;
    covered.set(key, (covered.get(key) ?? 0) + 1);
  };
  for (const argv of CLI_EXTRA) run(argv, argv.join(" "), "extra");
  while (ran < CLI_CASES) {
    const c = generate(rand);
    const argv = argvOf(c);
    if (argv && argv.join(" ").length < 100_000) run(argv, show(c), `${c.kind} ${c.what}`);
  }
  assert.equal(stateDump(), stateBefore, "state unchanged");
  assert.equal(kernelSnapshot(), kernelBefore, "kernel unchanged");
  console.log(
    `fuzz (CLI): ${ran} cases, ${covered.size} kinds ${JSON.stringify(Object.fromEntries([...covered].sort()))}, ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
});

// ---------------------------------------------------------------------------------------------------------
// apply files

interface FileCase {
  /** The file's text (readSceneFile parses it as `netctx apply FILE` does). */
  text: string;
  what: string;
}

let applySeq = 0;

/** A valid scene: a new network, a context on an existing one, or both (the context then on the new network). */
function validScene(rand: Rand): { networks: Record<string, Json>[]; contexts: Record<string, Json>[] } {
  const n = ++applySeq;
  const net = { name: `an${n}`, driver: "bridge", subnets: [`10.${120 + (n % 50)}.${n % 256}.0/24`] };
  const r = rand();
  if (r < 0.35) return { networks: [net], contexts: [] };
  if (r < 0.7) return { networks: [], contexts: [{ name: `ac${n}`, level: "l2", networks: ["fz"] }] };
  return { networks: [net], contexts: [{ name: `ac${n}`, level: "l2", networks: [net.name] }] };
}

/** Mutate one field of a valid scene into something parseScene or the engine must refuse. */
function badSceneObject(rand: Rand): { scene: Record<string, Json>; what: string } {
  const s = validScene(rand);
  const scene: Record<string, Json> = { version: 1, networks: s.networks, contexts: s.contexts };
  const net = s.networks[0];
  const ctx = s.contexts[0];
  const choices = [
    "version",
    "root",
    "top",
    "extra",
    ...(net
      ? ["net.name", "net.subnets", "net.driver", "net.mtu", "net.gateways", "net.dup", "net.type"]
      : []),
    ...(ctx
      ? ["ctx.name", "ctx.level", "ctx.networks", "ctx.ips", "ctx.dangling", "ctx.dup", "ctx.netns"]
      : []),
  ];
  const what = pick(rand, choices);
  switch (what) {
    case "version":
      scene["version"] = pick(rand, [0, 2, -1, 1.5, 1e308, -(2 ** 63), "1", null, [1], true]);
      break;
    case "root":
      // {} is a valid (empty) scene: nothing to do.
      return {
        scene: { _root: pick(rand, [...WRONG_TYPES.filter((v) => !isEmptyObject(v)), "scene", 42]) },
        what,
      };
    case "top":
      scene[pick(rand, ["networks", "contexts"])] = pick(rand, ["x", 5, { a: 1 }, true, [5], [null], ["x"]]);
      break;
    case "extra":
      scene[
        pick(rand, ["colour", "Networks", "network", "prune", "__proto__x", "名前", "k".repeat(50_000)])
      ] = pick(rand, ["x", 1, []]);
      break;
    case "net.name":
      net!["name"] = badName(rand, false);
      break;
    case "net.subnets":
      net!["subnets"] = rand() < 0.8 ? [badCidr(rand)] : pick(rand, [[], "10.1.0.0/24", [5], null]);
      break;
    case "net.driver":
      net!["driver"] = pick(rand, ["", "warp", "../bridge", "brïdge", 5, null]);
      break;
    case "net.mtu":
      net!["mtu"] = pick(rand, BAD_MTUS);
      break;
    case "net.gateways":
      net!["gateways"] = pick(rand, [["garbage"], ["10.99.99.1"], [5], "10.1.0.1", ["../../etc"]]);
      break;
    case "net.dup":
      s.networks.push({ ...net! });
      break;
    case "net.type":
      net![pick(rand, ["nat", "internal", "antispoof", "options"])] = pick(rand, ["yes", 1, [], "x"]);
      break;
    case "ctx.name":
      ctx!["name"] = badName(rand, true);
      break;
    case "ctx.level":
      ctx!["level"] = pick(rand, ["", "l4", "L2", "l２", 2, null, ["l2"]]);
      break;
    case "ctx.networks":
      ctx!["networks"] = pick(rand, [[], "fz", [5], [null], ["../fz"], ["名前"]]);
      break;
    case "ctx.ips":
      ctx!["ips"] = [
        pick(
          rand,
          BAD_IPS.filter((ip) => !ip.startsWith("10.70.0.") || ip.length > 11),
        ),
      ];
      break;
    case "ctx.dangling":
      ctx!["networks"] = [pick(rand, ["ghost", "an0", "fz2", `an${applySeq + 1}`])];
      break;
    case "ctx.dup":
      s.contexts.push({ ...ctx! });
      break;
    default:
      ctx!["netns"] = pick(rand, ["../../etc", "relative", "", 5, ["/run/netns/x"]]);
  }
  return { scene, what };
}

function isEmptyObject(v: Json): boolean {
  return v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0;
}

/** File text: JSON, YAML, or text-level damage (truncation, duplicate keys, tabs, binary, nothing at all). */
function badSceneFile(rand: Rand): FileCase {
  const r = rand();
  const { scene, what } = badSceneObject(rand);
  const body = "_root" in scene ? scene["_root"] : scene;
  if (r < 0.4) return { text: JSON.stringify(body), what };
  if (r < 0.7) return { text: yamlStringify(body), what };
  // Text damage on a valid scene: YAML is a superset of JSON, and cut JSON never closes its braces.
  const s = validScene(rand);
  const good = JSON.stringify({ networks: s.networks, contexts: s.contexts });
  const kind = pick(rand, [
    "truncated",
    "dupkey",
    "dupkey-inner",
    "tab",
    "binary",
    "empty",
    "unclosed",
    "huge",
  ]);
  switch (kind) {
    case "truncated":
      return { text: good.slice(0, 1 + Math.floor(rand() * (good.length - 2))), what: kind };
    case "dupkey":
      return { text: `{"networks": [], "contexts": [], "networks": []}`, what: kind };
    case "dupkey-inner":
      return {
        text: `networks:\n  - name: dk${applySeq}\n    name: dk${applySeq}b\n    driver: bridge\n    subnets: [10.119.0.0/24]\n`,
        what: kind,
      };
    case "tab":
      return { text: "networks:\n\t- name: x\n", what: kind };
    case "binary":
      return { text: "\u0000\u0001\u0002\uFFFD\u202e", what: kind };
    case "empty":
      return { text: pick(rand, ["", "\n", "# only a comment\n", "---\n", "null\n", "~\n"]), what: kind };
    case "unclosed":
      return { text: `networks:\n  - name: "x\n    driver: bridge\n`, what: kind };
    default:
      return { text: `networks:\n  - name: ${"x".repeat(200_000)}\n`, what: kind };
  }
}

/** An error message a user can act on: one line, bounded, naming a field ("networks[0].name: ..."). */
function assertNamesField(err: unknown, label: string): NetctxError {
  assert.ok(err !== undefined, `${label}: accepted`);
  assert.ok(err instanceof NetctxError, `${label}: threw ${String(err)}`);
  assert.ok(!err.message.includes("\n"), `${label}: more than one line: ${err.message.slice(0, 300)}`);
  assert.ok(err.message.length < 400, `${label}: a ${err.message.length}-character message`);
  assert.ok(err.field, `${label}: no field named in "${err.message}"`);
  return err;
}

test(`${APPLY_CASES} bad apply files through the library are refused naming the field and change nothing`, async () => {
  const rand = mulberry32(SEED + 2);
  const started = Date.now();
  const dir = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH ?? tmpdir(), "apply-"));
  let kernelBefore = fullSnapshot();
  const stateBefore = stateDump();
  const fields = new Map<string, number>();
  for (let i = 0; i < APPLY_CASES; i++) {
    const c = badSceneFile(rand);
    const file = join(dir, `case${i}.yaml`);
    writeFileSync(file, c.text);
    const label = `apply case ${i} (${c.what}): ${c.text.length > 200 ? `${c.text.slice(0, 200)}...` : c.text}`;
    let error: unknown;
    try {
      applyScene(host, await readSceneFile(file), { source: file });
    } catch (err) {
      error = err;
    }
    const e = assertNamesField(error, label);
    const top = (e.field ?? "").replace(/\[\d+\].*$/, "");
    fields.set(top, (fields.get(top) ?? 0) + 1);
    assert.equal(stateDump(), stateBefore, `${label} changed the state`);
    if (i % 50 === 49 || i === APPLY_CASES - 1) {
      const now = fullSnapshot();
      assert.equal(now, kernelBefore, `the kernel changed by apply case ${i - 49}..${i}`);
      kernelBefore = now;
    }
  }
  console.log(
    `fuzz (apply, library): ${APPLY_CASES} cases, fields ${JSON.stringify(Object.fromEntries(fields))}, ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
});

// ---------------------------------------------------------------------------------------------------------
// CNI config and environment

interface CniCase {
  env: Record<string, string | undefined>;
  stdin: string;
  what: string;
}

function validCni(rand: Rand): { env: Record<string, string | undefined>; conf: Record<string, Json> } {
  return {
    env: {
      CNI_COMMAND: rand() < 0.8 ? "ADD" : "DEL",
      CNI_CONTAINERID: `fzctr${Math.floor(rand() * 1e6)}`,
      CNI_NETNS: `/run/netns/${RUNTIME_NETNS}`,
      CNI_IFNAME: "eth0",
      CNI_PATH: "/usr/lib/cni",
    },
    conf: { cniVersion: pick(rand, ["0.4.0", "1.0.0", "1.1.0"]), name: "fzc", type: "netctx", network: "fz" },
  };
}

const HOSTILE_NETNS = [
  "../../etc",
  "/run/netns/../../etc",
  "/etc/passwd",
  "/dev/null",
  "/",
  "/run/netns",
  "relative/netns",
  "/run/netns/ghost",
  "/proc/self/fd/0",
  `/${"x".repeat(5000)}`,
  "/run/netns/fzrt\n",
  "/run/netns/名前",
];

function badCni(rand: Rand): CniCase {
  const { env, conf } = validCni(rand);
  // DEL is idempotent and reads only the container's identity: values ADD would refuse are no error there.
  const add = env["CNI_COMMAND"] === "ADD";
  const what = pick(rand, [
    "command",
    "containerid",
    ...(add ? ["netns", "netns", "ifname", "args-ip", "conf-field", "conf-field", "runtimeConfig"] : []),
    ...(add ? [] : ["ifname-missing", "conf-parse"]),
    "args",
    "args",
    "stdin",
    "stdin",
    "version",
    "conf-extra",
    "dupkey",
  ]);
  let stdin: string | undefined;
  switch (what) {
    case "command":
      env["CNI_COMMAND"] = pick(rand, [
        undefined,
        "",
        "add",
        "ADD ",
        "DELETE",
        "ADD;DEL",
        "../ADD",
        "ＡＤＤ",
        "X".repeat(100_000),
      ]);
      break;
    case "containerid":
      env["CNI_CONTAINERID"] = pick(rand, [
        undefined,
        "",
        "../../etc",
        "a/b",
        "a b",
        "-lead",
        "名前",
        "x\ny",
        `${"a".repeat(50_000)}/`,
        "$(reboot)",
      ]);
      break;
    case "netns":
      env["CNI_NETNS"] = pick(rand, [undefined, "", ...HOSTILE_NETNS]);
      break;
    case "ifname":
      env["CNI_IFNAME"] = pick(rand, [
        undefined,
        "",
        "a/b",
        "..",
        ".",
        "averyveryverylong0",
        "eth0\n",
        "ëth0",
        "x".repeat(100_000),
      ]);
      break;
    case "ifname-missing":
      env["CNI_IFNAME"] = pick(rand, [undefined, ""]);
      break;
    case "conf-parse":
      conf[pick(rand, ["name", "type", "mtu", "dns", "ipam", "ipMasq"])] = pick(rand, [null, [5], { a: [] }]);
      break;
    case "args-ip":
      env["CNI_ARGS"] = pick(rand, [
        "IP=garbage",
        "IP=10.70.0.20",
        "IP=10.71.0.5",
        "IP=10.70.0.0",
        "MAC=zz:11:22:33:44:55",
        "MAC=ff:ff:ff:ff:ff:ff",
        "IP=10.70.0.300",
      ]);
      break;
    case "args": {
      const r = rand();
      env["CNI_ARGS"] =
        r < 0.3
          ? pick(rand, ["FOO=1", "=x", "novalue", "K8S_POD_COLOUR=p;IgnoreUnknown=0", ";;=;;", "IP"])
          : r < 0.6
            ? Array.from({ length: 10_000 + Math.floor(rand() * 50_000) }, (_, i) => `K${i}=v`).join(";")
            : `${"K".repeat(100_000 + Math.floor(rand() * 100_000))}`;
      break;
    }
    case "stdin": {
      const good = JSON.stringify(conf);
      stdin = pick(rand, [
        "",
        "null",
        "[]",
        "42",
        '"conf"',
        "{",
        "not json",
        good.slice(0, 1 + Math.floor(rand() * (good.length - 2))),
        `${good}}`,
        `[${good}]`,
        "\u0000\u0001",
        `{"cniVersion": "1.0.0", "name": "${"n".repeat(200_000)}`,
      ]);
      break;
    }
    case "version":
      conf["cniVersion"] = pick(rand, [
        "",
        "9.9.9",
        "1.0",
        "0.3.1",
        "v1.0.0",
        1,
        null,
        ["1.0.0"],
        "1".repeat(10_000),
      ]);
      break;
    case "conf-field": {
      const field = pick(rand, [
        "name",
        "type",
        "mtu",
        "subnets",
        "driver",
        "network",
        "ipMasq",
        "dns",
        "ipam",
      ]);
      const bad: Record<string, Json[]> = {
        name: ["", 5, null, ["fzc"]],
        type: [5, null, {}],
        mtu: [-1, 0, 67, 65536, 1e308, 1.5, "1500"],
        subnets: [[], ["banana"], ["10.70.0.0/16"], "10.1.0.0/24", [5]],
        driver: ["warp", "", 5, "host"],
        network: ["ghost", "../fz", "名前", "x".repeat(100_000), 5],
        ipMasq: ["yes", 1],
        dns: ["x", { nameservers: "8.8.8.8" }, { search: [5] }],
        ipam: ["host-local", 5, ["x"]],
      };
      conf[field] = pick(rand, bad[field]!);
      if (field === "subnets" || field === "driver") conf["network"] = `fzn${Math.floor(rand() * 1e6)}`;
      break;
    }
    case "conf-extra":
      conf[pick(rand, ["colour", "Name", "cniversion", "__proto__x", "名前", "x".repeat(10_000)])] = "x";
      break;
    case "runtimeConfig":
      conf["runtimeConfig"] = pick(rand, [
        { portMappings: [{ hostPort: -1, containerPort: 80 }] },
        { portMappings: [{ hostPort: 70_000, containerPort: 80 }] },
        { portMappings: [{ hostPort: "80", containerPort: 80 }] },
        { portMappings: "80:80" },
        { ips: ["garbage"] },
        { ips: ["10.70.0.20"] },
        { ips: "10.70.0.9" },
        { mac: "zz:zz" },
        { bandwidth: { ingressRate: -5 } },
        "x",
      ]);
      break;
    default:
      // JSON.parse keeps the last of duplicate keys (as Go's decoder does): the last one here is bad.
      stdin = JSON.stringify(conf)
        .replace(/^\{/, `{"cniVersion": "1.0.0", "name": "fzc", `)
        .replace(/"name":"fzc"/, `"name":${pick(rand, ["5", "null", '""', "[]"])}`);
  }
  return { env, stdin: stdin ?? JSON.stringify(conf), what };
}

/** The spec's error: one line of JSON with a numeric code and a short msg, nothing else on stdout. */
function assertCniError(out: { code: number; stdout: string }, label: string): number {
  assert.equal(out.code, 1, `${label}: exit ${out.code}, stdout ${out.stdout.slice(0, 300)}`);
  assert.ok(!out.stdout.trim().includes("\n"), `${label}: more than one line`);
  assert.ok(out.stdout.startsWith("{"), `${label}: stdout ${JSON.stringify(out.stdout.slice(0, 300))}`);
  const e = JSON.parse(out.stdout) as { cniVersion?: unknown; code?: unknown; msg?: unknown };
  assert.equal(typeof e.cniVersion, "string", `${label}: no cniVersion`);
  assert.ok(typeof e.code === "number" && Number.isInteger(e.code) && e.code > 0, `${label}: code ${e.code}`);
  assert.ok(typeof e.msg === "string" && e.msg.length > 0, `${label}: no msg`);
  assert.ok(e.msg.length < 400, `${label}: a ${e.msg.length}-character msg: ${e.msg.slice(0, 200)}...`);
  return e.code;
}

function showCni(c: CniCase): string {
  const env = JSON.stringify(c.env);
  const cut = (s: string) => (s.length > 150 ? `${s.slice(0, 150)}...` : s);
  return `${c.what}: env ${cut(env)} stdin ${cut(c.stdin)}`;
}

test(`${CNI_CASES} bad CNI configs and environments through runCni get the spec's error and change nothing`, () => {
  const rand = mulberry32(SEED + 3);
  const started = Date.now();
  let kernelBefore = fullSnapshot();
  const stateBefore = stateDump();
  const codes = new Map<number, number>();
  for (let i = 0; i < CNI_CASES; i++) {
    const c = badCni(rand);
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(c.env)) if (v !== undefined) env[k] = v;
    const label = `CNI case ${i} ${showCni(c)}`;
    const code = assertCniError(runCni(env, c.stdin, host), label);
    codes.set(code, (codes.get(code) ?? 0) + 1);
    assert.equal(stateDump(), stateBefore, `${label} changed the state`);
    if (i % 50 === 49 || i === CNI_CASES - 1) {
      const now = fullSnapshot();
      assert.equal(now, kernelBefore, `the kernel changed by CNI case ${i - 49}..${i}`);
      kernelBefore = now;
    }
  }
  console.log(
    `fuzz (CNI, runCni): ${CNI_CASES} cases, codes ${JSON.stringify(Object.fromEntries(codes))}, ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
});

test(`a sample through the real entry points: \`netctx apply FILE\` and the installed CNI plugin`, () => {
  const rand = mulberry32(SEED + 4);
  const started = Date.now();
  const dir = mkdtempSync(join(process.env.NETCTX_TEST_SCRATCH ?? tmpdir(), "apply-cli-"));
  const kernelBefore = fullSnapshot();
  const stateBefore = stateDump();
  const files = [join(dir, "missing.yaml")];
  for (let i = 0; i < ENTRY_CASES; i++) {
    const c = badSceneFile(rand);
    if (c.text.length > 100_000) continue;
    const file = join(dir, `case${i}.${c.text.startsWith("{") ? "json" : "yaml"}`);
    writeFileSync(file, c.text);
    files.push(file);
  }
  for (const file of files) {
    const r = netctx("apply", file);
    const label = `netctx apply ${file}: ${existsSync(file) ? readFileSync(file, "utf8").slice(0, 200) : ""}`;
    assert.notEqual(r.code, 0, `${label} exited 0`);
    assert.match(r.stderr, /^error: [^\n]*\n$/, `${label}: stderr ${JSON.stringify(r.stderr.slice(0, 300))}`);
  }
  let plugin = 0;
  while (plugin < ENTRY_CASES) {
    const c = badCni(rand);
    // A real environment cannot hold NUL bytes, and the kernel caps one variable at 128 KiB.
    if (Object.values(c.env).some((v) => v !== undefined && (v.includes("\u0000") || v.length > 100_000)))
      continue;
    plugin++;
    const r = cniRaw(c.env, c.stdin);
    assertCniError(
      { code: r.code, stdout: r.stdout },
      `plugin ${showCni(c)} (stderr ${r.stderr.slice(0, 300)})`,
    );
  }
  assert.equal(stateDump(), stateBefore, "state unchanged");
  assert.equal(fullSnapshot(), kernelBefore, "kernel unchanged");
  console.log(
    `fuzz (entry points): ${files.length} apply files, ${plugin} plugin calls, ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
});
