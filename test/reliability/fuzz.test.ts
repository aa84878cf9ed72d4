/**
 * Hostile input: a seeded generator mutates one field of a valid network or context request into something bad
 * (wrong types, unicode, huge strings, path traversal, negative and huge numbers, taken addresses, overlaps ...).
 * Every case must be refused with a NetctxError whose message is one line, and leave the state store and the
 * kernel exactly as they were. Most cases go through the library (createNetwork / createContext, which parse
 * with the zod schemas), a sample through the real CLI (one line on stderr starting "error:", non-zero exit).
 * NETCTX_FUZZ_SEED, NETCTX_FUZZ_CASES (library, default 2000) and NETCTX_FUZZ_CLI (default 100) tune it.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createContext } from "../../src/engine/contexts.ts";
import { createNetwork } from "../../src/engine/networks.ts";
import { NetctxError } from "../../src/errors.ts";
import { Host } from "../../src/host.ts";
import { netctx, netctxOk } from "../helpers/cli.ts";
import { kernelSnapshot } from "../helpers/kernel.ts";
import { mulberry32 } from "./prng.ts";

const SEED = Number(process.env.NETCTX_FUZZ_SEED ?? 7);
const CASES = Number(process.env.NETCTX_FUZZ_CASES ?? 2000);
const CLI_CASES = Number(process.env.NETCTX_FUZZ_CLI ?? 100);

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
  host = Host.open();
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
  ["network", "create", "x", "--subnet", "10.1.0.0/24"],
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
  const run = (argv: string[], label: string) => {
    const r = netctx(...argv);
    ran++;
    assert.notEqual(r.code, 0, `${label} exited 0`);
    assert.match(r.stderr, /^error: [^\n]*\n$/, `${label}: stderr ${JSON.stringify(r.stderr.slice(0, 300))}`);
    assert.equal(r.stdout, "", `${label}: printed ${r.stdout}`);
  };
  for (const argv of CLI_EXTRA) run(argv, argv.join(" "));
  while (ran < CLI_CASES) {
    const c = generate(rand);
    const argv = argvOf(c);
    if (argv && argv.join(" ").length < 100_000) run(argv, show(c));
  }
  assert.equal(stateDump(), stateBefore, "state unchanged");
  assert.equal(kernelSnapshot(), kernelBefore, "kernel unchanged");
  console.log(`fuzz (CLI): ${ran} cases, ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
